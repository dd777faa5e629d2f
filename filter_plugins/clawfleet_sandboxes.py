"""Ansible filters that keep sandbox secret values out of looped structures.

A task that loops over ``clawfleet_sandboxes`` puts each whole item into its result, and Ansible prints that result
when an item fails or at ``-v``: a ``secrets.NAME.value`` in the item is printed with it. Roles and playbooks loop
over what these filters return instead, and read a value only in a task with ``no_log: true``::

    loop: "{{ clawfleet_sandboxes | clawfleet_sandboxes_without_secret_values }}"
    loop: "{{ clawfleet_sandboxes | clawfleet_sandbox_secret_files('/etc/clawfleet/secrets') }}"

Error messages name the sandbox and the secret, never a value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

try:
    from ansible.errors import AnsibleFilterError
except ImportError:  # pragma: no cover - lets the module be imported (and tested) without Ansible

    class AnsibleFilterError(Exception):  # type: ignore[no-redef]
        pass


# A sandbox name and a secret name become parts of a file name under the secrets directory (written as root before
# the gateway checks the definition): nothing that could leave that directory. Secret names as the gateway's.
_SANDBOX_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,62}")
_SECRET_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def _secrets(sandbox, index: int) -> tuple[str, Mapping]:
    if not isinstance(sandbox, Mapping) or not isinstance(sandbox.get("name"), str):
        raise AnsibleFilterError(f"clawfleet_sandboxes[{index}]: expected a mapping with a string 'name'")
    name = sandbox["name"]
    secrets = sandbox.get("secrets") or {}
    if not isinstance(secrets, Mapping):
        raise AnsibleFilterError(f"clawfleet_sandboxes[{index}] ({name}): secrets must be a mapping NAME -> spec")
    for key, spec in secrets.items():
        if not _SANDBOX_NAME.fullmatch(name):
            raise AnsibleFilterError(f"clawfleet_sandboxes[{index}]: name {name!r} must match [a-z0-9][a-z0-9_.-]*")
        if not _SECRET_NAME.fullmatch(str(key)):
            raise AnsibleFilterError(
                f"clawfleet_sandboxes[{index}] ({name}): secret name {key!r} must match [A-Za-z_][A-Za-z0-9_]*"
            )
        if not isinstance(spec, Mapping):
            raise AnsibleFilterError(
                f"clawfleet_sandboxes[{index}] ({name}): secrets.{key} must be a mapping with value or file, and hosts"
            )
    return name, secrets


def sandboxes_without_secret_values(sandboxes) -> list[dict]:
    """Each sandbox as given, with every ``secrets.NAME.value`` replaced by ``stored: true`` (file and hosts kept)."""
    out = []
    for index, sandbox in enumerate(sandboxes or []):
        _, secrets = _secrets(sandbox, index)
        public = dict(sandbox)
        if "secrets" in sandbox:
            public["secrets"] = {
                key: {
                    **{k: v for k, v in spec.items() if k != "value"},
                    **({"stored": True} if "value" in spec else {}),
                }
                for key, spec in secrets.items()
            }
        out.append(public)
    return out


def sandbox_secret_files(sandboxes, secrets_dir: str) -> list[dict]:
    """One ``{sandbox, secret, path}`` per secret given as a value: where it is stored on the host, not the value."""
    out = []
    for index, sandbox in enumerate(sandboxes or []):
        name, secrets = _secrets(sandbox, index)
        for key, spec in secrets.items():
            if "value" in spec:
                out.append({"sandbox": name, "secret": key, "path": f"{secrets_dir}/sandbox-{name}-{key}"})
    return out


class FilterModule:
    def filters(self):
        return {
            "clawfleet_sandboxes_without_secret_values": sandboxes_without_secret_values,
            "clawfleet_sandbox_secret_files": sandbox_secret_files,
        }
