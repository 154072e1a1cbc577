import sys

from django.core.management.base import BaseCommand, CommandError

from catalog.catalog_file import CatalogFileError, catalog_file_read, catalog_text_parse
from catalog.importer import catalog_import


class Command(BaseCommand):
    help = (
        "Create or update upstreams (with their credentials), models and routes from a catalog YAML file "
        "(format: catalog/catalog_file.py)."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="Path to the catalog file, or - for standard input.")
        parser.add_argument("--dry-run", action="store_true", help="Validate and count changes; save nothing.")

    def handle(self, *args, file: str, dry_run: bool, **options):
        try:
            if file == "-":
                data = catalog_text_parse(text=sys.stdin.read(), source="<stdin>")
            else:
                data = catalog_file_read(path=file)
            result = catalog_import(data=data, dry_run=dry_run)
        except CatalogFileError as exc:
            raise CommandError(f"{file} is not a valid catalog:\n{exc}") from exc
        self.stdout.write(f"{file}: {result.summary()}")
