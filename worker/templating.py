"""Where templates come from: the package's `templates/` folder, or NEWSLETTER_TEMPLATES_DIR."""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment, FileSystemLoader, TemplateNotFound

from .errors import TemplateMissing


class _NotFound(TemplateMissing, TemplateNotFound):
    """Both: Jinja's own handling (`ignore missing`, `select_template`) still works, and the
    CLI prints it as one line like any other configuration error."""

    def __init__(self, name: str, folder: Path):
        TemplateNotFound.__init__(self, name, f"template {name} not found in {folder} (NEWSLETTER_TEMPLATES_DIR)")


class TemplateFiles(FileSystemLoader):
    """A `FileSystemLoader` over `templates_dir / part` (part: "email" or "web") whose missing
    template raises `TemplateMissing` naming the folder and the setting that chose it."""

    def __init__(self, templates_dir: Path | str, part: str):
        self.folder = Path(templates_dir) / part
        super().__init__(str(self.folder))

    def get_source(self, environment: Environment, template: str):  # noqa: ANN201 - Jinja's own tuple
        try:
            return super().get_source(environment, template)
        except TemplateNotFound:
            raise _NotFound(template, self.folder) from None


__all__ = ["TemplateFiles"]
