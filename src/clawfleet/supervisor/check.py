"""``clawfleet gateway check --config FILE``: everything the supervisor would refuse when it starts a sandbox,
found now (nothing is started). Used as the Ansible gateway role's ``validate:`` command."""

from __future__ import annotations

import os

from clawfleet.gateway.config import GatewayConfig
from clawfleet.gateway.privsep import parser_user
from clawfleet.policy import compile_policy, compose_checked, load_file
from clawfleet.sandbox.definition import DefinitionError, SandboxDefinition, load_definition, load_mapping

from .attach import gateway_config_for
from .config import load_daemon_config

__all__ = ["check_definition", "check_file"]


def check_definition(path: str) -> SandboxDefinition:
    """The sandbox's own checks (:meth:`SandboxDefinition.check`), then its gateway settings and secrets, the
    policy's credential bindings against the gateway's providers (as the gateway refuses them at start), and the
    effective policy (the policy plus its providers' ``_provider_*`` rules) compiled as the gateway compiles it.
    Raises ValueError (DefinitionError, ConfigError, EnvError), PolicyError or OSError."""
    d = load_definition(path)
    d.check()
    config: GatewayConfig = gateway_config_for(d, state_dir=os.path.dirname(d.path))
    for b in config.secrets:
        if b.minted_by is None and not os.path.isfile(b.file):
            raise DefinitionError(f"{path}: secret {b.name}: no file {b.file}")
    for provider, per_var in config.refresh.items():  # a minted credential's material, read by the gateway only
        for var, material in per_var.items():
            for name, file in material.items():
                if not os.path.isfile(file):
                    raise DefinitionError(f"{path}: provider {provider}: {var} refresh material {name}: no file {file}")
    missing = set(d.credentials) - {b.name for b in config.secrets}
    if missing:
        raise DefinitionError(f"{path}: credentials without a secrets binding: {', '.join(sorted(missing))}")
    compile_policy(compose_checked(load_file(config.policy), config.providers))
    return d


def check_file(path: str) -> list[str]:
    """Validate a daemon config (and every definition it lists) or a single definition file.

    Returns the names of the sandboxes checked; raises ValueError/OSError/PolicyError with a message an operator
    can act on.
    """
    data = load_mapping(path).data
    if "name" in data or "command" in data:
        return [check_definition(path).name]
    config = load_daemon_config(path)
    if config.problems:
        raise DefinitionError("\n".join(config.problems))
    if config.gateway_user:
        parser_user(config.gateway_user)  # exists, not root (ValueError)
    names: list[str] = []
    for item in config.sandboxes:
        d = check_definition(item)
        if d.name in names:
            raise DefinitionError(f"{path}: duplicate sandbox name {d.name!r}")
        if config.gateway_user and d.user == config.gateway_user:
            # same uid: the sandbox could signal its parser (and read it but for PR_SET_DUMPABLE)
            raise DefinitionError(f"{path}: sandbox {d.name} runs as gateway_user {d.user!r}; give it another user")
        names.append(d.name)
    return names
