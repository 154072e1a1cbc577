from django.core.management.base import BaseCommand, CommandError

from catalog.catalog_file import catalog_yaml_dump
from catalog.importer import catalog_export


class Command(BaseCommand):
    help = "Write the catalog as YAML in the catalog_import format. Literal keys (pooled ones too) are written as ***."

    def add_arguments(self, parser):
        parser.add_argument("--output", "-o", metavar="FILE", help="Write to FILE instead of standard output.")

    def handle(self, *args, output: str | None, **options):
        data = catalog_export()
        text = catalog_yaml_dump(data)
        if not output:
            self.stdout.write(text, ending="")
            return
        try:
            with open(output, "w", encoding="utf-8") as fh:
                fh.write(text)
        except OSError as exc:
            raise CommandError(f"cannot write {output}: {exc.strerror or exc}") from exc
        self.stderr.write(f"Wrote {len(data['upstreams'])} upstreams and {len(data['models'])} models to {output}")
