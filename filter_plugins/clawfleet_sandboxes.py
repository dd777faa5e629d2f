"""Ansible filters that keep sandbox secret values out of looped structures.

A task that loops over ``clawfleet_sandboxes`` puts each whole item into its result, and Ansible prints that result
when an item fails or at ``-v``: a ``secrets.NAME.value`` in the item is printed with it. Roles and playbooks loop
over what these filters return instead, and read a value only in a task with ``no_log: true``::

    loop: "{{ clawfleet_sandboxes | clawfleet_sandboxes_without_secret_values }}"
    loop: "{{ clawfleet_sandboxes | clawfleet_sandbox_secret_files('/etc/clawfleet/secrets') }}"

A sandbox's ``channels`` (``{telegram: {bot_token: ...}}``, docs/agents.md "Channels") are expanded first by
``clawfleet_sandbox_channels``: each channel adds its preset and its bot tokens as secrets bound to the channel's
API host and place, under the variable names OpenClaw reads (TELEGRAM_BOT_TOKEN, ...). Both filters above expand
them, so every role sees channels as the presets and secrets they stand for.

A sandbox's ``providers`` (upstream Providers v2, docs/gateway.md "Providers")::

    providers:
      work-gcp:
        profile: "{{ lookup('ansible.builtin.file', 'providers/gcp-token.yaml') | from_yaml }}"  # the profile
        credentials: {GCP_TOKEN: "{{ vault_work_gcp_token }}"}   # or {GCP_TOKEN: {file: /existing/root/file}}

are expanded the same way: each credential given as a value becomes a secret (``provider: NAME``, no hosts: the
gateway binds it to the provider's endpoints), stored root-only by the secrets task like any other, and the
provider keeps its profile and the credential names only. ``clawfleet_sandbox_provider_profiles(dir)`` lists the
profile files the sandbox role writes (profiles are not secret).

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
# Provider instance names as the gateway's (clawfleet.policy.schema.PROVIDER_NAME_RE); they name a profile file.
_PROVIDER_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,126}[A-Za-z0-9])?")


# channel -> (preset, {inventory key: (secret name = the variable OpenClaw reads, binding)}). The bindings put the
# token only where the channel's API expects it (docs/gateway.md, Credentials): Telegram's in the path segment
# /bot<token>, Slack's and Discord's in Authorization with their one scheme; no other header, no query.
CHANNELS: dict[str, tuple[str, dict[str, tuple[str, dict]]]] = {
    "telegram": (
        "telegram",
        {"bot_token": ("TELEGRAM_BOT_TOKEN", {"hosts": ["api.telegram.org"], "headers": [], "path": ["/bot"]})},
    ),
    "slack": (
        "slack",
        {
            "bot_token": ("SLACK_BOT_TOKEN", {"hosts": ["slack.com"], "schemes": ["bearer"]}),
            "app_token": ("SLACK_APP_TOKEN", {"hosts": ["slack.com"], "schemes": ["bearer"]}),
        },
    ),
    "discord": (
        "discord",
        {"bot_token": ("DISCORD_BOT_TOKEN", {"hosts": ["discord.com"], "schemes": ["bot"]})},
    ),
}


def _channels(sandbox, index: int) -> dict:
    """The sandbox with its ``channels`` turned into presets and secrets (the input is left as it was)."""
    channels = sandbox.get("channels") if isinstance(sandbox, Mapping) else None
    if not channels:
        return sandbox
    name = sandbox.get("name")
    where = f"clawfleet_sandboxes[{index}] ({name})"
    if not isinstance(channels, Mapping):
        raise AnsibleFilterError(f"{where}: channels must be a mapping CHANNEL -> tokens ({', '.join(CHANNELS)})")
    presets = list(sandbox.get("presets") or [])
    secrets = dict(sandbox.get("secrets") or {})
    for channel, tokens in channels.items():
        if channel not in CHANNELS:
            raise AnsibleFilterError(f"{where}: unknown channel {channel!r} (known: {', '.join(CHANNELS)})")
        preset, wanted = CHANNELS[channel]
        if not isinstance(tokens, Mapping) or set(tokens) != set(wanted):
            keys = sorted(map(str, tokens)) if isinstance(tokens, Mapping) else tokens
            raise AnsibleFilterError(
                f"{where}: channels.{channel} needs exactly {', '.join(sorted(wanted))}, got {keys!r}"
            )
        for key, (secret, binding) in wanted.items():
            if secret in secrets:
                raise AnsibleFilterError(f"{where}: channels.{channel} defines {secret}, which secrets also defines")
            value = tokens[key]
            # a string, or an inline !vault value (not a str subclass in every Ansible version)
            if value is None or isinstance(value, (Mapping, list, bool, int, float)) or not str(value).strip():
                raise AnsibleFilterError(f"{where}: channels.{channel}.{key} must be a non-empty string (the vault's)")
            secrets[secret] = {"value": value, **binding}
        if preset not in presets:
            presets.append(preset)
    out = {k: v for k, v in sandbox.items() if k != "channels"}
    out.update(presets=presets, secrets=secrets, channels=sorted(channels))  # channels: the names only
    return out


def _providers(sandbox, index: int) -> dict:
    """The sandbox with each provider credential given as a value turned into a secret (``provider: NAME``); the
    provider keeps its profile and ``credentials`` as names -> ``{secret: true}`` or ``{file: PATH}``."""
    providers = sandbox.get("providers") if isinstance(sandbox, Mapping) else None
    if not providers:
        return sandbox
    where = f"clawfleet_sandboxes[{index}] ({sandbox.get('name')})"
    if not isinstance(providers, Mapping):
        raise AnsibleFilterError(f"{where}: providers must be a mapping NAME -> {{profile, credentials}}")
    secrets = dict(sandbox.get("secrets") or {})
    public = {}
    for provider, spec in providers.items():
        if not _PROVIDER_NAME.fullmatch(str(provider)):
            raise AnsibleFilterError(f"{where}: provider name {provider!r} must be letters, digits and . _ -")
        if not isinstance(spec, Mapping) or not isinstance(spec.get("profile"), Mapping) or set(spec) - {
                "profile", "credentials", "refresh"}:  # fmt: skip
            raise AnsibleFilterError(f"{where}: providers.{provider} needs 'profile' (a mapping: the provider"
                                     " profile) and 'credentials'")  # fmt: skip
        creds = spec.get("credentials") or {}
        if not isinstance(creds, Mapping):
            raise AnsibleFilterError(f"{where}: providers.{provider}.credentials must map a variable to its value")
        names = {}
        for var, value in creds.items():
            if not _SECRET_NAME.fullmatch(str(var)):
                raise AnsibleFilterError(f"{where}: providers.{provider}: {var!r} is not a variable name")
            if var in secrets:
                raise AnsibleFilterError(f"{where}: providers.{provider} defines {var}, which secrets also defines")
            if isinstance(value, Mapping):
                if set(value) != {"file"} or not str(value["file"]).startswith("/"):
                    raise AnsibleFilterError(f"{where}: providers.{provider}.credentials.{var}: a value (the"
                                             " vault's) or {file: /absolute/path}")  # fmt: skip
                names[var] = {"file": value["file"]}
                continue
            # a string, or an inline !vault value (not a str subclass in every Ansible version)
            if value is None or isinstance(value, (list, bool, int, float)) or not str(value).strip():
                raise AnsibleFilterError(f"{where}: providers.{provider}.credentials.{var} must be a non-empty"
                                         " string (the vault's)")  # fmt: skip
            secrets[var] = {"value": value, "provider": provider}
            names[var] = {"secret": True}
        public[provider] = {"profile": spec["profile"], "credentials": names}
        refresh = _refresh(spec.get("refresh"), provider, spec["profile"], secrets, where)
        if refresh:
            public[provider]["refresh"], public[provider]["minted"] = refresh
    out = {k: v for k, v in sandbox.items() if k != "providers"}
    out.update(secrets=secrets, providers=public)
    return out


def _refresh(refresh, provider: str, profile: Mapping, secrets: dict, where: str) -> tuple[dict, list] | None:
    """``refresh: {VARIABLE: {material: value | {file: /path}}}`` (gateway-minted credentials, docs/gateway.md): each
    material value becomes a root-only secret ``VARIABLE__material`` marked ``material: true`` (stored like any
    secret, never a placeholder in the sandbox); returns (VARIABLE -> material -> {secret: KEY} | {file: PATH}, the
    variables the refresh mints: the credential's and its additional outputs' siblings', which the sandbox gets
    as placeholders)."""
    if not refresh:
        return None
    if not isinstance(refresh, Mapping):
        raise AnsibleFilterError(f"{where}: providers.{provider}.refresh must map a variable to its material")
    creds = [c for c in profile.get("credentials") or [] if isinstance(c, Mapping)]
    out: dict = {}
    minted: list = []
    for var, material in refresh.items():
        cred = next((c for c in creds if var in (c.get("env_vars") or []) and c.get("refresh")), None)
        if cred is None or not isinstance(material, Mapping):
            raise AnsibleFilterError(f"{where}: providers.{provider}.refresh.{var}: not a credential with a refresh"
                                     " block in the profile, or its material is not a mapping")  # fmt: skip
        minted += [v for v in cred["env_vars"] if v not in minted]
        for output in cred["refresh"].get("additional_outputs") or []:
            sibling = next((c for c in creds if c.get("name") == output.get("credential")), {})
            minted += [v for v in sibling.get("env_vars") or [] if v not in minted]
        out[var] = {}
        for name, value in material.items():
            key = f"{var}__{name}"
            if not _SECRET_NAME.fullmatch(key):
                raise AnsibleFilterError(
                    f"{where}: providers.{provider}.refresh.{var}: {name!r} is not a material name"
                )
            if isinstance(value, Mapping):
                if set(value) != {"file"} or not str(value["file"]).startswith("/"):
                    raise AnsibleFilterError(f"{where}: providers.{provider}.refresh.{var}.{name}: a value (the"
                                             " vault's) or {file: /absolute/path}")  # fmt: skip
                out[var][name] = {"file": value["file"]}
                continue
            if value is None or isinstance(value, (list, bool, int, float)) or not str(value).strip():
                raise AnsibleFilterError(f"{where}: providers.{provider}.refresh.{var}.{name} must be a non-empty"
                                         " string (the vault's)")  # fmt: skip
            if key in secrets:
                raise AnsibleFilterError(f"{where}: providers.{provider}.refresh: {key} is also a secret")
            secrets[key] = {"value": value, "provider": provider, "material": True}
            out[var][name] = {"secret": key}
    return out, minted


def sandbox_channels(sandboxes) -> list:
    """Each sandbox with its channels and providers expanded into presets and secrets (values included: no_log
    tasks only)."""
    return [_providers(_channels(sandbox, index), index) for index, sandbox in enumerate(sandboxes or [])]


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
    if sandbox.get("providers") and not _SANDBOX_NAME.fullmatch(name):
        raise AnsibleFilterError(f"clawfleet_sandboxes[{index}]: name {name!r} must match [a-z0-9][a-z0-9_.-]*")
    return name, secrets


def sandboxes_without_secret_values(sandboxes) -> list[dict]:
    """Each sandbox as given, with every ``secrets.NAME.value`` replaced by ``stored: true`` (file and hosts kept)."""
    out = []
    for index, sandbox in enumerate(sandbox_channels(sandboxes)):
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
    for index, sandbox in enumerate(sandbox_channels(sandboxes)):
        name, secrets = _secrets(sandbox, index)
        for key, spec in secrets.items():
            if "value" in spec:
                out.append({"sandbox": name, "secret": key, "path": f"{secrets_dir}/sandbox-{name}-{key}"})
    return out


def sandbox_provider_profiles(sandboxes, directory: str) -> list[dict]:
    """One ``{sandbox, provider, path, profile}`` per provider: where the sandbox role writes its profile."""
    out = []
    for index, sandbox in enumerate(sandbox_channels(sandboxes)):
        name, _ = _secrets(sandbox, index)
        for provider, spec in (sandbox.get("providers") or {}).items():
            out.append({"sandbox": name, "provider": provider, "path": f"{directory}/{name}-{provider}.yaml",
                        "profile": spec["profile"]})  # fmt: skip
    return out


class FilterModule:
    def filters(self):
        return {
            "clawfleet_sandbox_provider_profiles": sandbox_provider_profiles,
            "clawfleet_sandboxes_without_secret_values": sandboxes_without_secret_values,
            "clawfleet_sandbox_secret_files": sandbox_secret_files,
            "clawfleet_sandbox_channels": sandbox_channels,
        }
