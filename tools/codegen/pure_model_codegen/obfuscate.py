"""Masked weights for `obfuscate = True`: the blob then holds no tensor as it is.

A key is derived from the model's bytes and an optional user string (so the same inputs always
give the same blob: builds stay reproducible and cacheable). From it, each tensor gets a 32-bit
seed, the tensors are laid out in the blob in a shuffled order, and every tensor's bytes (as
little-endian 32-bit words) are XORed with the keystream that runtime/include/pure_model/masked.h
describes and that the kernels undo as they load each value. The padding between tensors is
keystream too, so nothing in the blob is zero where a tensor ends.

This hides the weights from anyone reading the binary without running it; it is not
encryption: the key is in the program, as it must be for the program to run.
"""

import hashlib

import numpy as np

_BLOCK_WORDS = 8
_GOLDEN = 0x9E3779B9
_LANE_STEP = 0x632BE5AB
_U32 = 0xFFFFFFFF


def model_key(model_path, user_key=""):
    """32 bytes from the model file and the user's key string."""
    digest = hashlib.sha256()
    with open(model_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    digest.update(b"\0pure_model obfuscation key\0")
    digest.update(user_key.encode("utf-8"))
    return digest.digest()


def _derive(key, label, index):
    return hashlib.sha256(key + f"\0{label}\0{index}".encode()).digest()


def tensor_seed(key, index):
    """The 32-bit seed of the blob's tensor number `index`."""
    return int.from_bytes(_derive(key, "seed", index)[:4], "little")


def shuffled(key, count):
    """0 .. count-1 in the order the key gives them (the tensors' order in the blob)."""
    return sorted(range(count), key=lambda i: _derive(key, "order", i))


def _mix(x):
    """MaskMix of masked.h over an array of uint32 (numpy wraps the products mod 2^32)."""
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def keystream(seed, words):
    """Key(j) for j < words, as masked.h computes it."""
    with np.errstate(over="ignore"):
        j = np.arange(words, dtype=np.uint64)
        blocks = ((j // _BLOCK_WORDS) * _GOLDEN & _U32).astype(np.uint32)
        lanes = _mix((np.uint32(seed) + np.arange(1, _BLOCK_WORDS + 1, dtype=np.uint32) * np.uint32(_LANE_STEP)))
        return _mix(np.uint32(seed) ^ blocks) ^ lanes[(j % _BLOCK_WORDS).astype(np.int64)]


def mask(data, seed):
    """`data` (bytes) XORed with the keystream of `seed`; the same call unmasks."""
    padded = data + bytes(-len(data) % 4)
    words = np.frombuffer(padded, dtype="<u4")
    return (words ^ keystream(seed, len(words)).astype("<u4")).tobytes()[:len(data)]
