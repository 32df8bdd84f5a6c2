"""Checks a Bazel execution log (--execution_log_json_file) for remote cache hits.

    exec_log_cache_hits.py --require=PureModelCodegen,CppCompile [--optional=PureModelReference]
                           [--baseline=FIRST_BUILD.json] LOG.json

Prints, per mnemonic, how many spawns the log holds and how many were remote cache hits. Fails
(exit 1) when a required mnemonic has no spawn at all, when an `--optional` mnemonic is present
but not every spawn of it hit, or when any spawn of a required mnemonic was not a remote cache
hit. Misses of other mnemonics are reported, not failed.

With --baseline (the log of the build that filled the cache, from another checkout), each miss
is explained: the spawn with the same first output in the baseline is compared with it field by
field (command line, environment, platform, input paths and digests). That is what makes up
the action's cache key, so a difference there names the cause of the miss (e.g. an absolute
path of the checkout or output base in a command line or in a generated input).
"""

import argparse
import collections
import json
import sys

SHOW_MISSES = 20
SHOW_DIFFERENCES = 8


def read_spawns(path):
    # The JSON log is a stream of SpawnExec objects, not one JSON document.
    with open(path, encoding="utf-8") as f:
        text = f.read()
    decoder = json.JSONDecoder()
    spawns, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return spawns
        spawn, pos = decoder.raw_decode(text, pos)
        spawns.append(spawn)


def primary_output(spawn):
    outputs = spawn.get("listedOutputs") or [o.get("path", "") for o in spawn.get("actualOutputs", [])]
    return outputs[0] if outputs else "?"


def remote_cache_hit(spawn):
    # Bazel 7 logs `cacheHit` plus the runner ("remote cache hit", "disk cache hit"); some
    # versions have a `remoteCacheHit` field instead.
    if "remoteCacheHit" in spawn:
        return bool(spawn["remoteCacheHit"])
    return bool(spawn.get("cacheHit")) and spawn.get("runner", "") == "remote cache hit"


def cacheable(spawn):
    # False for no-remote / no-remote-cache / no-cache tags.
    return all(spawn.get(key, True) for key in ("remotable", "cacheable", "remoteCacheable"))


def digest_of(entry):
    d = entry.get("digest") or {}
    return "%s/%s" % (d.get("hash", "-"), d.get("sizeBytes", "0"))


def differences(a, b):
    # Yields human-readable differences between two spawns' cache-key ingredients.
    if a.get("commandArgs") != b.get("commandArgs"):
        args_a, args_b = a.get("commandArgs", []), b.get("commandArgs", [])
        for i in range(max(len(args_a), len(args_b))):
            x = args_a[i] if i < len(args_a) else "<none>"
            y = args_b[i] if i < len(args_b) else "<none>"
            if x != y:
                yield "argument %d: %r (baseline) vs %r" % (i, x, y)
    env_a = {e["name"]: e.get("value", "") for e in a.get("environmentVariables", [])}
    env_b = {e["name"]: e.get("value", "") for e in b.get("environmentVariables", [])}
    for name in sorted(set(env_a) | set(env_b)):
        if env_a.get(name) != env_b.get(name):
            yield "env %s: %r (baseline) vs %r" % (name, env_a.get(name), env_b.get(name))
    if a.get("platform") != b.get("platform"):
        yield "platform: %r (baseline) vs %r" % (a.get("platform"), b.get("platform"))
    inputs_a = {i["path"]: digest_of(i) for i in a.get("inputs", [])}
    inputs_b = {i["path"]: digest_of(i) for i in b.get("inputs", [])}
    for path in sorted(set(inputs_a) | set(inputs_b)):
        if path not in inputs_b:
            yield "input only in baseline: " + path
        elif path not in inputs_a:
            yield "input only in this build: " + path
        elif inputs_a[path] != inputs_b[path]:
            yield "input content differs: %s (%s vs %s)" % (path, inputs_a[path], inputs_b[path])
    if sorted(a.get("listedOutputs", [])) != sorted(b.get("listedOutputs", [])):
        yield "outputs: %r (baseline) vs %r" % (a.get("listedOutputs"), b.get("listedOutputs"))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--require", default="", help="comma-separated mnemonics that must all hit")
    parser.add_argument("--optional", default="",
                        help="comma-separated mnemonics that must all hit if present")
    parser.add_argument("--baseline", help="execution log of the build that filled the cache")
    parser.add_argument("log")
    opts = parser.parse_args()
    required = [m for m in opts.require.split(",") if m]
    optional = [m for m in opts.optional.split(",") if m]

    spawns = read_spawns(opts.log)
    baseline = {}
    if opts.baseline:
        for spawn in read_spawns(opts.baseline):
            baseline[primary_output(spawn)] = spawn

    total = collections.Counter()
    hits = collections.Counter()
    not_cacheable = collections.Counter()
    misses = []
    for spawn in spawns:
        mnemonic = spawn.get("mnemonic", "?")
        total[mnemonic] += 1
        if remote_cache_hit(spawn):
            hits[mnemonic] += 1
        else:
            misses.append(spawn)
            if not cacheable(spawn):
                not_cacheable[mnemonic] += 1

    width = max([len(m) for m in total] + [8])
    for mnemonic in sorted(total):
        note = ""
        if not_cacheable[mnemonic]:
            note = "  (%d not remotable/cacheable: no-remote/no-cache tags)" % not_cacheable[mnemonic]
        print("  %-*s %4d remote cache hits of %4d spawns%s" % (
            width, mnemonic, hits[mnemonic], total[mnemonic], note))

    failures = []
    for mnemonic in required:
        if total[mnemonic] == 0:
            failures.append("no %s spawn in the log" % mnemonic)
    for mnemonic in required + optional:
        if hits[mnemonic] != total[mnemonic]:
            failures.append("%d of %d %s spawns missed the cache" % (
                total[mnemonic] - hits[mnemonic], total[mnemonic], mnemonic))

    checked = set(required + optional)
    for label, group in (("MISS (must hit)", [s for s in misses if s.get("mnemonic") in checked]),
                         ("miss (not checked)", [s for s in misses if s.get("mnemonic") not in checked])):
        for spawn in group[:SHOW_MISSES]:
            output = primary_output(spawn)
            print("  %s %s %s -> %s (runner: %s, cacheable: %s)" % (
                label, spawn.get("mnemonic"), spawn.get("targetLabel", "?"), output,
                spawn.get("runner", "?"), cacheable(spawn)))
            if output in baseline:
                before = baseline[output]
                if before.get("digest") and spawn.get("digest"):
                    same = before["digest"] == spawn["digest"]
                    print("      action digest %s the baseline's" % ("equals" if same else "differs from"))
                diff = list(differences(before, spawn))
                if not diff:
                    print("      same command, environment and inputs as in the baseline build: its result was not in the cache")
                for line in diff[:SHOW_DIFFERENCES]:
                    print("      " + line)
                if len(diff) > SHOW_DIFFERENCES:
                    print("      ... and %d more differences" % (len(diff) - SHOW_DIFFERENCES))
            elif opts.baseline:
                print("      no spawn with this output in the baseline build")
        if len(group) > SHOW_MISSES:
            print("  ... and %d more" % (len(group) - SHOW_MISSES))

    for failure in failures:
        print("  FAIL " + failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
