"""``manage.py rotate_receipt_key``: a new Ed25519 issuer key for receipts.

With a key file (the embedded mode's ``var/receipt_signing_key``, or the file named by
``AQTA_RECEIPT_SIGNING_KEY_FILE``) the file is replaced atomically and the new key listed
at once; running servers pick it up on their next receipt. With the key in
``AQTA_RECEIPT_SIGNING_KEY`` itself, ``--print`` writes the new private key once, to put
into the secret store before restarting; it is listed when a server first signs with it.
Either way the old key stays listed, retired, so receipts it signed keep verifying.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from healthcare import keyring
from healthcare.signing import IssuerKey, issuer_key, issuer_key_forget, key_file, key_file_write


class Command(BaseCommand):
    help = "Rotate the receipt issuer's signing key; earlier keys keep verifying."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--print",
            action="store_true",
            dest="print_key",
            help="The key is in AQTA_RECEIPT_SIGNING_KEY: print the new private key once.",
        )

    def handle(self, *args: Any, print_key: bool, **options: Any) -> None:
        old = issuer_key()
        keyring.register(old)  # its window starts at its first use at the latest
        new = IssuerKey.generate()
        path = key_file()
        if path is None:
            if not print_key:
                raise CommandError(
                    "The signing key is given in AQTA_RECEIPT_SIGNING_KEY itself, which this "
                    "command cannot change: run it with --print, store the key it prints in "
                    "your secret store and restart the servers."
                )
            self.stdout.write(f"AQTA_RECEIPT_SIGNING_KEY={new.seed}")
            self.stdout.write(f"new key {new.key_id} (public {new.public_key}); store it, restart")
            return
        key_file_write(path, new)
        issuer_key_forget()
        keyring.register(new)
        self.stdout.write(
            f"rotated: {old.key_id} retired, {new.key_id} current (public {new.public_key})"
        )
