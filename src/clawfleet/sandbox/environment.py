"""The sandbox's environment: built from scratch, never inherited.

Only locale/terminal settings are copied from the supervisor (an allowlist). Credentials enter as
placeholders (``openshell:resolve:env:NAME``) that the egress gateway replaces on the wire; a real value
for a credential-looking name is refused.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PLACEHOLDER_PREFIX = "openshell:resolve:env:"

#: Copied from the supervisor when set: they say how to display text, nothing about who we are.
PASSTHROUGH = ("LANG", "LANGUAGE", "TERM", "COLORTERM", "NO_COLOR", "TZ")
_PASSTHROUGH_PREFIXES = ("LC_",)
_CREDENTIAL_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE", re.IGNORECASE)


class EnvError(ValueError):
    pass


def placeholder(name: str) -> str:
    return PLACEHOLDER_PREFIX + name


def looks_like_credential(name: str) -> bool:
    return bool(_CREDENTIAL_NAME.search(name))


def display_env(env: Mapping[str, str]) -> dict[str, str]:
    """The locale and terminal settings of ``env`` (:data:`PASSTHROUGH`, ``LC_*``): how to display text."""
    return {k: v for k, v in env.items() if k in PASSTHROUGH or k.startswith(_PASSTHROUGH_PREFIXES)}


def build(
    supervisor_env: Mapping[str, str],
    user: str,
    *,
    explicit: Mapping[str, str] | None = None,
    credentials: Iterable[str] = (),
    home: str = "/sandbox",
) -> dict[str, str]:
    """Return the complete environment for the sandboxed command.

    ``explicit``: NAME=VALUE set by the operator (a credential-looking NAME must carry a placeholder).
    ``credentials``: names that get a placeholder value.
    """
    env = {"PATH": DEFAULT_PATH, "HOME": home, "USER": user, "LOGNAME": user, "SHELL": "/bin/sh"}
    env.update(display_env(supervisor_env))
    for name, value in (explicit or {}).items():
        if looks_like_credential(name) and not value.startswith(PLACEHOLDER_PREFIX):
            raise EnvError(
                f"{name} looks like a credential: pass it with --credential {name} (a placeholder the gateway"
                " resolves), never its value"
            )
        env[name] = value
    for name in credentials:
        env[name] = placeholder(name)
    return env
