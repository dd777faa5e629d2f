"""Offline fleet bundles: wheels for every target Python, policies and host artifacts, under a sha256 manifest.

The lifecycle is resolve -> verify digest -> plan -> apply: a bundle is built once on the controller, its digest
(the sha256 of its SHA256SUMS file) is what hosts are told to expect, and every host checks the digest and every
file's checksum before it installs anything from it. An empty or missing digest is an error, never a skip.
"""

from clawfleet.bundle.build import BuildResult, Target, build_bundle
from clawfleet.bundle.verify import BundleError, bundle_digest, verify_bundle

__all__ = ["BuildResult", "BundleError", "Target", "build_bundle", "bundle_digest", "verify_bundle"]
