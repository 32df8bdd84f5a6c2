"""The one error type the generator raises for bad input.

Every message names the model file and, where there is one, the node, its op and what is wrong,
so that a failed build points straight at the cause. The CLI prints it as one line, without a
Python traceback.
"""


MAX_MESSAGE = 2000


class CodegenError(Exception):
    """A problem with the model or the request, reported to the user as one line."""

    def __init__(self, message, *, model_path=None, node=None):
        super().__init__(message)
        self.message = message
        self.model_path = model_path
        self.node = node

    def __str__(self):
        parts = []
        if self.model_path:
            parts.append(str(self.model_path))
        if self.node is not None:
            parts.append(self.node.describe())
        parts.append(self.message)
        text = one_line(": ".join(parts))
        # A message quotes values from the model, which can be huge (a shape tensor of a million
        # entries): keep the line readable.
        return text if len(text) <= MAX_MESSAGE else text[:MAX_MESSAGE] + "... (message cut)"


def one_line(text):
    """`text` with line breaks and other control characters escaped, so it prints as one line.

    Names in a model may hold any characters; a newline in a tensor name must not split the error.
    """
    return "".join(ch if ch.isprintable() or ch == " " else ch.encode("unicode_escape").decode("ascii")
                   for ch in str(text))
