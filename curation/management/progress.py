"""Progress bars for the management commands: tqdm drawing on a command's stderr."""

from __future__ import annotations


class ProgressStream:
    """A command's stderr (its output wrapper) as tqdm's file: tqdm redraws its bar with partial lines, so
    each write goes out as it is, without the line ending and the style the wrapper would add."""

    def __init__(self, wrapper):
        self.wrapper = wrapper

    def write(self, text: str) -> None:
        self.wrapper.write(text, style_func=str, ending="")

    def __getattr__(self, name):
        return getattr(self.wrapper, name)
