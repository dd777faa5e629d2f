"""Bundle verification for the bundle package's callers; the format itself lives in :mod:`clawfleet.bundle_format`."""

from __future__ import annotations

from clawfleet.bundle_format import MANIFEST, SUMS, BundleError, bundle_digest, read_sums, sha256_file, verify_bundle

__all__ = ["MANIFEST", "SUMS", "BundleError", "bundle_digest", "read_sums", "sha256_file", "verify_bundle"]
