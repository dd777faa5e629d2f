"""Config sections for attribution and spending: ``identity``, ``limits``, ``prices``, ``state_dir``.

Parsed by :func:`clawfleet.router.config.parse_config`, with the same file:line errors.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from clawfleet.router.identity import IdentityKeyError, load_key

LIMIT_KEYS = ("requests_per_min", "tokens_per_min", "usd_per_day", "usd_per_month")
UNKNOWN_POLICIES = ("allow", "refuse")


@dataclass(frozen=True)
class LimitSet:
    """None: no limit of that kind."""

    requests_per_min: int | None = None
    tokens_per_min: int | None = None
    usd_per_day: float | None = None
    usd_per_month: float | None = None

    def merged(self, override: LimitSet) -> LimitSet:
        return LimitSet(
            **{
                f.name: getattr(override, f.name) if getattr(override, f.name) is not None else getattr(self, f.name)
                for f in fields(self)
            }
        )

    @property
    def any(self) -> bool:
        return any(getattr(self, f.name) is not None for f in fields(self))

    @property
    def spends(self) -> bool:
        return self.usd_per_day is not None or self.usd_per_month is not None


@dataclass(frozen=True)
class LimitsConfig:
    sandbox: LimitSet = LimitSet()  # every sandbox (``unknown`` included) unless overridden
    sandboxes: Mapping[str, LimitSet] = field(default_factory=dict)
    host: LimitSet = LimitSet()

    def for_sandbox(self, name: str) -> LimitSet:
        override = self.sandboxes.get(name)
        return self.sandbox.merged(override) if override is not None else self.sandbox

    @property
    def any(self) -> bool:
        return self.sandbox.any or self.host.any or any(s.any for s in self.sandboxes.values())

    @property
    def spends(self) -> bool:
        return self.sandbox.spends or self.host.spends or any(s.spends for s in self.sandboxes.values())


@dataclass(frozen=True)
class Price:
    input: float  # USD per million tokens
    output: float


@dataclass(frozen=True)
class IdentityOptions:
    key: bytes | None = field(default=None, repr=False)
    unknown: str = "allow"  # requests without a valid gateway proof: attributed to "unknown", or refused (401)
    max_skew_s: float = 30.0
    configured: bool = False


def parse_identity(
    ctx: Any, node: Any, root: Any, env: Mapping[str, str] | None, read_secrets: bool
) -> IdentityOptions:
    from clawfleet.router.config import check_keys, expect

    if node is None:
        return IdentityOptions()
    expect(ctx, node, dict, "identity", root, "identity")
    check_keys(ctx, node, {"key_file", "credential", "unknown", "max_skew_s"}, "identity")
    unknown = node.get("unknown", "allow")
    if unknown not in UNKNOWN_POLICIES:
        raise ctx.fail(f"unknown must be one of {', '.join(UNKNOWN_POLICIES)}", "identity.unknown", node, "unknown")
    skew = node.get("max_skew_s", 30)
    expect(ctx, skew, (int, float), "identity.max_skew_s", node, "max_skew_s")
    if not 1 <= skew <= 600:
        raise ctx.fail("max_skew_s must be between 1 and 600", "identity.max_skew_s", node, "max_skew_s")
    key_file, cred = node.get("key_file"), node.get("credential")
    if (key_file is None) == (cred is None):
        raise ctx.fail(
            "set one of key_file or credential (the per-host key the gateway signs with)", "identity", root, "identity"
        )
    which = "key_file" if key_file is not None else "credential"
    expect(ctx, node[which], str, f"identity.{which}", node, which)
    key = None
    if read_secrets:
        env = os.environ if env is None else env
        if cred is not None:
            creds = env.get("CREDENTIALS_DIRECTORY")
            if not creds:
                raise ctx.fail(
                    f"credential {cred!r} needs $CREDENTIALS_DIRECTORY (systemd LoadCredential=)",
                    "identity.credential",
                    node,
                    "credential",
                )
            path = Path(creds) / cred
        else:
            path = Path(key_file)
        try:
            key = load_key(path)
        except IdentityKeyError as exc:
            raise ctx.fail(str(exc), f"identity.{which}", node, which) from None
    return IdentityOptions(key=key, unknown=unknown, max_skew_s=float(skew), configured=True)


def _limit_set(ctx: Any, node: Any, path: str, parent: Any, key: Any) -> LimitSet:
    from clawfleet.router.config import check_keys, expect

    expect(ctx, node, dict, path, parent, key)
    check_keys(ctx, node, set(LIMIT_KEYS), path)
    values: dict[str, Any] = {}
    for name in LIMIT_KEYS:
        if name not in node:
            continue
        typ = int if name.endswith("_per_min") else (int, float)
        value = expect(ctx, node[name], typ, f"{path}.{name}", node, name)
        if value < 0:
            raise ctx.fail("limits are >= 0 (0 refuses everything)", f"{path}.{name}", node, name)
        values[name] = float(value) if name.startswith("usd_") else value
    return LimitSet(**values)


def parse_limits(ctx: Any, node: Any, root: Any) -> LimitsConfig:
    from clawfleet.router.config import check_keys, expect

    if node is None:
        return LimitsConfig()
    expect(ctx, node, dict, "limits", root, "limits")
    check_keys(ctx, node, {"sandbox", "sandboxes", "host"}, "limits")
    sandbox = _limit_set(ctx, node["sandbox"], "limits.sandbox", node, "sandbox") if "sandbox" in node else LimitSet()
    host = _limit_set(ctx, node["host"], "limits.host", node, "host") if "host" in node else LimitSet()
    per = node.get("sandboxes", {})
    expect(ctx, per, dict, "limits.sandboxes", node, "sandboxes")
    sandboxes = {str(n): _limit_set(ctx, v, f"limits.sandboxes.{n}", per, n) for n, v in per.items()}
    return LimitsConfig(sandbox, sandboxes, host)


def parse_prices(ctx: Any, node: Any, root: Any, providers: Mapping[str, Any]) -> dict[tuple[str, str], Price]:
    """``prices: {provider: {real-model: {input: USD/1M tokens, output: USD/1M tokens}}}``."""
    from clawfleet.router.config import check_keys, expect

    if node is None:
        return {}
    expect(ctx, node, dict, "prices", root, "prices")
    out: dict[tuple[str, str], Price] = {}
    for pname, models in node.items():
        path = f"prices.{pname}"
        if pname not in providers:
            raise ctx.fail(f"unknown provider {pname!r} (known: {', '.join(providers)})", path, node, pname)
        expect(ctx, models, dict, path, node, pname)
        served = set(providers[pname].models.values())
        for model, price in models.items():
            mpath = f"{path}.{model}"
            if model not in served:
                raise ctx.fail(
                    f"provider {pname!r} serves no model {model!r} (its models: {', '.join(sorted(served))})",
                    mpath,
                    models,
                    model,
                )
            expect(ctx, price, dict, mpath, models, model)
            check_keys(ctx, price, {"input", "output"}, mpath)
            vals = []
            for side in ("input", "output"):
                if side not in price:
                    raise ctx.fail(f"missing {side!r} (USD per million tokens)", mpath, models, model)
                v = expect(ctx, price[side], (int, float), f"{mpath}.{side}", price, side)
                if v < 0:
                    raise ctx.fail("prices are >= 0", f"{mpath}.{side}", price, side)
                vals.append(float(v))
            out[(pname, model)] = Price(*vals)
    return out


def check_priced(
    ctx: Any, limits: LimitsConfig, prices: Mapping[tuple[str, str], Price], providers: Mapping[str, Any], root: Any
) -> None:
    """With a spending budget, every cloud model must have a price: an unpriced call would spend unseen."""
    if not limits.spends:
        return
    for p in providers.values():
        if p.local:
            continue
        for model in sorted(set(p.models.values())):
            if (p.name, model) not in prices:
                raise ctx.fail(
                    f"a spending budget is set but cloud model {model!r} of provider {p.name!r} has no "
                    f"price; add prices.{p.name}.{model}: {{input: N, output: N}}",
                    "prices",
                    root,
                    "prices" if "prices" in root else "limits",
                )
