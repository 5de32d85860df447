"""Class names that travel with a model: a text file beside the net, one name a line, in
class-index order (Caffe's synset_words.txt and labels.txt are such files)."""
from pathlib import Path

from compiler.errors import NetdefError

SUFFIX = ".labels.txt"


def labels_beside(net_path):
    """Where the class names of `net_path` live: deploy.prototxt -> deploy.labels.txt."""
    path = Path(net_path)
    return path.with_name(path.stem + SUFFIX)


def read_labels(path):
    """The class names of a labels file, one a line (blank lines at the end ignored); a
    blank line among them, or an unreadable file, is an error naming the line."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise NetdefError(str(path), None, None, "cannot read the class names: %s"
                          % (getattr(e, "strerror", None) or e)) from None
    while lines and not lines[-1].strip():
        lines.pop()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            raise NetdefError(str(path), number, None, "blank class name", "one class name a line")
    if not lines:
        raise NetdefError(str(path), None, None, "the labels file holds no class names")
    return [line.strip() for line in lines]
