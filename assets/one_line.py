"""Text from outside (names in a contract, errors that quote them) made safe for one line of a log or terminal."""


def one_line(text: str) -> str:
    """`text` with control and other unprintable characters escaped, as Python writes them in a string literal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
