"""The submission stage: model packages uploaded by developers, checked in a sandbox, then labeled.

* :mod:`~vlmhub.submission.package` — unpack and validate an uploaded archive (no pickles, no remote code,
  no path traversal, bounded size), giving the adapter source string of the model inside;
* :mod:`~vlmhub.submission.sandbox` — the admission checks in a child process under a time and memory limit;
* :mod:`~vlmhub.submission.workflow` — submit, check, label (leased jobs), publish: the body of `vlmhub worker`;
* :mod:`~vlmhub.submission.growth` — grow the semantic graph: label only the new and changed nodes.
"""

from __future__ import annotations

from .package import ModelPackage, PackageKind, PackageLimits, check_safetensors, pack_folder, unpack_package
from .sandbox import CheckOutcome, SandboxLimits, check_in_sandbox

__all__ = ["ModelPackage", "PackageKind", "PackageLimits", "check_safetensors", "pack_folder", "unpack_package",
           "CheckOutcome", "SandboxLimits", "check_in_sandbox"]
