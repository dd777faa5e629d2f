"""Router configuration: load and validate the YAML file, read provider secrets.

Errors carry the file, line and key path so an operator can fix them without
guessing, e.g. ``router.yaml:14: routes[1].provider: unknown provider 'opneai'
(known: local, openai)``. Secrets are read once at start from a file
(``api_key_file``) or a systemd credential (``credential`` ->
``$CREDENTIALS_DIRECTORY/NAME``) and are never put in an error message or a log.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from clawfleet.router.classifier import BUILTIN_TYPES, GROUPS, UNSCANNED, CustomClass
from clawfleet.router.classifier.custom import VALIDATORS

if TYPE_CHECKING:
    from clawfleet.router.limits_config import IdentityOptions, LimitsConfig, Price

PROVIDER_TYPES = ("openai", "anthropic", "nvidia", "gemini", "vllm", "ollama")
OPENAI_FAMILY = frozenset({"openai", "nvidia", "gemini", "vllm", "ollama"})
LOCAL_TYPES = frozenset({"vllm", "ollama"})
DEFAULT_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "nvidia": "https://integrate.api.nvidia.com/v1",
    "gemini": "https://generativelanguage.googleapis.com/v1beta/openai",
    "vllm": "http://127.0.0.1:8000/v1",
    "ollama": "http://127.0.0.1:11434/v1",
}
ACTIONS = ("block", "local", "redact", "cloud")  # strictest first
_NAME = re.compile(r"^[a-z][a-z0-9_\-]{0,62}$")


class ConfigError(ValueError):
    """A config problem, with where it is."""

    def __init__(self, message: str, *, source: str = "", path: str = "", line: int | None = None) -> None:
        self.message, self.source, self.path, self.line = message, source, path, line
        where = source
        if line is not None:
            where = f"{where}:{line}" if where else f"line {line}"
        prefix = ": ".join(p for p in (where, path) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)


@dataclass(frozen=True)
class Provider:
    name: str
    type: str
    base_url: str
    models: Mapping[str, str]
    local: bool
    timeout: float = 120.0
    connect_timeout: float = 5.0
    api_key: str | None = field(default=None, repr=False)
    anthropic_version: str = "2023-06-01"
    replicas: tuple[str, ...] = ()  # every deployment's base URL (base_url alone: one)
    cooldown_s: float = 0.0  # a failed deployment leaves the rotation this long
    health_interval_s: float = 0.0  # 0: no health checks

    def __post_init__(self) -> None:
        if not self.replicas:
            object.__setattr__(self, "replicas", (self.base_url,))

    @property
    def family(self) -> str:
        return "openai" if self.type in OPENAI_FAMILY else "anthropic"


@dataclass(frozen=True)
class Rule:
    name: str
    action: str
    classes: frozenset[str] | None  # None: matches every request (catch-all)
    provider: str | None
    fallback: tuple[str, ...] = ()

    def matches(self, cls: str) -> bool:
        if self.classes is None:
            return True
        if cls in self.classes:
            return True
        return any(cls in GROUPS.get(g, ()) for g in self.classes) or ("any" in self.classes and cls != UNSCANNED)


@dataclass(frozen=True)
class ClassifierOptions:
    min_score: float = 0.5
    disable: tuple[str, ...] = ()
    engines: tuple[str, ...] = ("builtin",)
    # a request whose classification takes longer is treated as unscanned: it goes local or gets 503
    time_budget_ms: int = 2000


@dataclass(frozen=True)
class RouterConfig:
    host: str
    port: int
    providers: Mapping[str, Provider]
    rules: tuple[Rule, ...]
    classifier: ClassifierOptions
    custom_classes: tuple[CustomClass, ...]
    max_body_bytes: int = 32 * 1024 * 1024
    decision_log: str = "stderr"
    source: str = ""
    identity: IdentityOptions | None = None
    limits: LimitsConfig | None = None
    prices: Mapping[tuple[str, str], Price] = field(default_factory=dict)
    state_dir: str | None = None
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = 9484  # None: no metrics listener
    digest: str = ""
    watch_config: bool = True  # poll the file for changes (SIGHUP reloads either way)
    retry_attempts: int = 0  # extra passes over a non-sensitive route's providers, after a backoff
    retry_backoff_s: float = 0.25  # doubled after each pass

    def model_aliases(self) -> list[str]:
        seen: dict[str, None] = {}
        for p in self.providers.values():
            for alias in p.models:
                seen.setdefault(alias, None)
        return list(seen)


class _Ctx:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, message: str, path: str, node: Any = None, key: Any = None) -> ConfigError:
        return ConfigError(message, source=self.source, path=path, line=_line(node, key))


def _line(node: Any, key: Any = None) -> int | None:
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        if key is not None:
            if isinstance(key, int):
                return lc.item(key)[0] + 1
            return lc.key(key)[0] + 1
        return lc.line + 1
    except (KeyError, IndexError, TypeError, AttributeError):
        return lc.line + 1 if getattr(lc, "line", None) is not None else None


def check_keys(ctx: _Ctx, node: Mapping[str, Any], allowed: set[str], path: str) -> None:
    for key in node:
        if key not in allowed:
            hint = ", ".join(sorted(allowed))
            raise ctx.fail(f"unknown key {key!r} (allowed: {hint})", f"{path}.{key}" if path else str(key), node, key)


def expect(ctx: _Ctx, value: Any, typ: type | tuple[type, ...], path: str, node: Any, key: Any) -> Any:
    if isinstance(value, bool) and typ in (int, float, (int, float)):
        raise ctx.fail(f"expected a number, got {value!r}", path, node, key)
    if not isinstance(value, typ):
        names = typ.__name__ if isinstance(typ, type) else " or ".join(t.__name__ for t in typ)
        names = names.replace("CommentedMap", "mapping").replace("dict", "mapping").replace("list", "list")
        raise ctx.fail(f"expected {names}, got {type(value).__name__}", path, node, key)
    return value


def _str_list(ctx: _Ctx, value: Any, path: str, node: Any, key: Any) -> tuple[str, ...]:
    expect(ctx, value, list, path, node, key)
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item:
            raise ctx.fail("expected a non-empty string", f"{path}[{i}]", value, i)
    return tuple(value)


def read_secret(api_key_file: str | None, credential: str | None, env: Mapping[str, str] | None = None) -> str:
    """Read a provider secret from a file or a systemd credential. Raises ValueError without the value."""
    env = os.environ if env is None else env
    if credential is not None:
        creds = env.get("CREDENTIALS_DIRECTORY")
        if not creds:
            raise ValueError(
                f"credential {credential!r} needs $CREDENTIALS_DIRECTORY (run under systemd with "
                f"LoadCredential={credential}:/path) or use api_key_file"
            )
        path = Path(creds) / credential
    else:
        assert api_key_file is not None
        path = Path(api_key_file)
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read secret file {str(path)!r}: {exc.strerror}") from None
    if not value:
        raise ValueError(f"secret file {str(path)!r} is empty")
    if any(ch in value for ch in "\r\n\0"):
        raise ValueError(f"secret file {str(path)!r} must hold one line")
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _provider(
    ctx: _Ctx, name: str, node: Any, parent: Any, env: Mapping[str, str] | None, read_secrets: bool = True
) -> Provider:
    path = f"providers.{name}"
    if not _NAME.match(name):
        raise ctx.fail("provider names use lowercase letters, digits, '-' and '_'", path, parent, name)
    expect(ctx, node, dict, path, parent, name)
    check_keys(
        ctx,
        node,
        {
            "type",
            "base_url",
            "api_key_file",
            "credential",
            "models",
            "timeout",
            "connect_timeout",
            "local",
            "anthropic_version",
            "replicas",
            "cooldown_s",
            "health_interval_s",
        },
        path,
    )
    ptype = node.get("type")
    if ptype not in PROVIDER_TYPES:
        raise ctx.fail(f"type must be one of {', '.join(PROVIDER_TYPES)}, got {ptype!r}", f"{path}.type", node, "type")
    if "replicas" in node and "base_url" in node:
        raise ctx.fail("set base_url (one deployment) or replicas (several), not both", path, parent, name)
    if "replicas" in node:
        urls = [u.rstrip("/") for u in _str_list(ctx, node["replicas"], f"{path}.replicas", node, "replicas")]
        if not urls:
            raise ctx.fail("list at least one replica base URL", f"{path}.replicas", node, "replicas")
        where = [(f"{path}.replicas[{i}]", node["replicas"], i) for i in range(len(urls))]
    else:
        urls = [str(node.get("base_url", DEFAULT_BASE_URLS[ptype])).rstrip("/")]
        where = [(f"{path}.base_url", node, "base_url")]
    local = node.get("local", ptype in LOCAL_TYPES)
    expect(ctx, local, bool, f"{path}.local", node, "local")
    for url, (upath, unode, ukey) in zip(urls, where, strict=True):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ctx.fail(f"base_url must be an http(s) URL, got {url!r}", upath, unode, ukey)
        if not local and parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ctx.fail(
                "a cloud provider must use https (plain http is accepted only for loopback test stand-ins)",
                upath,
                unode,
                ukey,
            )
    base_url = urls[0]
    several = len(urls) > 1
    cooldown = node.get("cooldown_s", 10.0 if several else 0.0)
    expect(ctx, cooldown, (int, float), f"{path}.cooldown_s", node, "cooldown_s")
    health = node.get("health_interval_s", 5.0 if several else 0.0)
    expect(ctx, health, (int, float), f"{path}.health_interval_s", node, "health_interval_s")
    if cooldown < 0 or health < 0:
        raise ctx.fail("cooldown_s and health_interval_s are >= 0", path, parent, name)
    models = node.get("models", {})
    expect(ctx, models, dict, f"{path}.models", node, "models")
    if not models:
        raise ctx.fail(
            "map at least one model alias, e.g. {default: real-model-name}", f"{path}.models", node, "models"
        )
    for alias, real in models.items():
        if not isinstance(alias, str) or not isinstance(real, str) or not real:
            raise ctx.fail("model aliases map a name to a real model name", f"{path}.models.{alias}", models, alias)
    timeout = node.get("timeout", 120.0)
    expect(ctx, timeout, (int, float), f"{path}.timeout", node, "timeout")
    connect_timeout = node.get("connect_timeout", 5.0)
    expect(ctx, connect_timeout, (int, float), f"{path}.connect_timeout", node, "connect_timeout")
    key_file, cred = node.get("api_key_file"), node.get("credential")
    if key_file is not None and cred is not None:
        raise ctx.fail("set api_key_file or credential, not both", path, parent, name)
    api_key = None
    if key_file is not None or cred is not None:
        which = "api_key_file" if key_file is not None else "credential"
        expect(ctx, node[which], str, f"{path}.{which}", node, which)
        if read_secrets:
            try:
                api_key = read_secret(key_file, cred, env)
            except ValueError as exc:
                raise ctx.fail(str(exc), f"{path}.{which}", node, which) from None
    elif ptype in ("openai", "anthropic", "nvidia", "gemini") and not local:
        raise ctx.fail(
            f"a {ptype} provider needs api_key_file (e.g. /etc/clawfleet/secrets/{name}) or credential "
            "(a systemd credential name)",
            path,
            parent,
            name,
        )
    return Provider(
        name=name,
        type=ptype,
        base_url=base_url,
        models=dict(models),
        local=local,
        timeout=float(timeout),
        connect_timeout=float(connect_timeout),
        api_key=api_key,
        anthropic_version=str(node.get("anthropic_version", "2023-06-01")),
        replicas=tuple(urls),
        cooldown_s=float(cooldown),
        health_interval_s=float(health),
    )


def _custom(ctx: _Ctx, name: str, node: Any, parent: Any) -> CustomClass:
    path = f"custom_classes.{name}"
    if not _NAME.match(name):
        raise ctx.fail("class names use lowercase letters, digits, '-' and '_'", path, parent, name)
    if name in BUILTIN_TYPES or name in GROUPS or name in ("any", UNSCANNED):
        raise ctx.fail(f"{name!r} is a built-in class or group name; pick another", path, parent, name)
    expect(ctx, node, dict, path, parent, name)
    check_keys(ctx, node, {"keywords", "regexes", "markers", "case_sensitive", "validate", "score"}, path)
    kw = _str_list(ctx, node.get("keywords", []), f"{path}.keywords", node, "keywords")
    markers = _str_list(ctx, node.get("markers", []), f"{path}.markers", node, "markers")
    regexes = _str_list(ctx, node.get("regexes", []), f"{path}.regexes", node, "regexes")
    if not (kw or markers or regexes):
        raise ctx.fail("give at least one of keywords, markers, regexes", path, parent, name)
    for i, rx in enumerate(regexes):
        try:
            compiled = re.compile(rx)
        except re.error as exc:
            raise ctx.fail(f"invalid regex: {exc}", f"{path}.regexes[{i}]", node["regexes"], i) from None
        if compiled.match(""):
            raise ctx.fail("regex matches the empty string", f"{path}.regexes[{i}]", node["regexes"], i)
    validate = node.get("validate")
    if validate is not None and validate not in VALIDATORS:
        raise ctx.fail(f"validate must be one of {', '.join(VALIDATORS)}", f"{path}.validate", node, "validate")
    score = node.get("score", 0.9)
    expect(ctx, score, (int, float), f"{path}.score", node, "score")
    case = node.get("case_sensitive", False)
    expect(ctx, case, bool, f"{path}.case_sensitive", node, "case_sensitive")
    return CustomClass(name, kw, regexes, markers, case, validate, float(score))


def _rules(ctx: _Ctx, node: Any, root: Any, providers: Mapping[str, Provider], known: set[str]) -> tuple[Rule, ...]:
    expect(ctx, node, list, "routes", root, "routes")
    if not node:
        raise ctx.fail(
            "add at least one route; the last one without 'classes' is the default", "routes", root, "routes"
        )
    rules: list[Rule] = []
    names: set[str] = set()
    for i, item in enumerate(node):
        path = f"routes[{i}]"
        expect(ctx, item, dict, path, node, i)
        check_keys(ctx, item, {"name", "classes", "action", "provider", "fallback"}, path)
        name = item.get("name", f"route-{i}")
        expect(ctx, name, str, f"{path}.name", item, "name")
        if name in names:
            raise ctx.fail(f"duplicate route name {name!r}", f"{path}.name", item, "name")
        names.add(name)
        action = item.get("action")
        if action not in ACTIONS:
            raise ctx.fail(
                f"action must be one of {', '.join(ACTIONS)}, got {action!r}", f"{path}.action", item, "action"
            )
        classes = None
        if "classes" in item:
            classes = frozenset(_str_list(ctx, item["classes"], f"{path}.classes", item, "classes"))
            for j, cls in enumerate(item["classes"]):
                if cls not in known:
                    raise ctx.fail(
                        f"unknown class {cls!r}; use a type, a group ({', '.join(sorted(GROUPS))}), 'any', "
                        f"'{UNSCANNED}' or a custom class",
                        f"{path}.classes[{j}]",
                        item["classes"],
                        j,
                    )
        provider = item.get("provider")
        fallback = _str_list(ctx, item.get("fallback", []), f"{path}.fallback", item, "fallback")
        if action == "block":
            if provider is not None or fallback:
                raise ctx.fail("a block route takes no provider or fallback", path, node, i)
        else:
            if provider not in providers:
                raise ctx.fail(
                    f"unknown provider {provider!r} (known: {', '.join(providers) or 'none'})",
                    f"{path}.provider",
                    item,
                    "provider",
                )
            for j, fb in enumerate(fallback):
                if fb not in providers:
                    raise ctx.fail(f"unknown provider {fb!r}", f"{path}.fallback[{j}]", item["fallback"], j)
            chain = [provider, *fallback]
            if action == "local":
                for pname in chain:
                    if not providers[pname].local:
                        raise ctx.fail(
                            f"a local route may only use local providers; {pname!r} is a cloud provider "
                            "(set local: true on it only if it runs on this host)",
                            f"{path}.provider",
                            item,
                            "provider",
                        )
            elif action == "redact" and fallback:
                raise ctx.fail(
                    "a redact route cannot fall back: a sensitive request whose route is down gets 503",
                    f"{path}.fallback",
                    item,
                    "fallback",
                )
        rules.append(Rule(name, action, classes, provider, fallback))
    if not any(r.classes is None for r in rules):
        raise ctx.fail(
            "the last route must have no 'classes' (the default for non-sensitive requests)", "routes", root, "routes"
        )
    if rules[-1].classes is not None:
        raise ctx.fail("the route without 'classes' must be the last one", "routes", root, "routes")
    return tuple(rules)


def parse_config(
    data: Any, *, source: str = "", env: Mapping[str, str] | None = None, read_secrets: bool = True
) -> RouterConfig:
    """Validate a parsed config. ``read_secrets=False`` checks where keys come from without reading them
    (for `router classify`, which never calls a provider)."""
    ctx = _Ctx(source)
    if not isinstance(data, dict):
        raise ctx.fail("the config must be a mapping", "")
    check_keys(
        ctx,
        data,
        {
            "version",
            "listen",
            "providers",
            "routes",
            "classifier",
            "custom_classes",
            "max_body_bytes",
            "decision_log",
            "identity",
            "limits",
            "prices",
            "state_dir",
            "metrics_listen",
            "watch_config",
            "retries",
        },
        "",
    )
    if data.get("version", 1) != 1:
        raise ctx.fail("only version 1 is supported", "version", data, "version")
    listen = data.get("listen", {})
    expect(ctx, listen, dict, "listen", data, "listen")
    check_keys(ctx, listen, {"host", "port"}, "listen")
    host = listen.get("host", "127.0.0.1")
    expect(ctx, host, str, "listen.host", listen, "host")
    port = listen.get("port", 8484)
    expect(ctx, port, int, "listen.port", listen, "port")
    if not 0 <= port <= 65535:
        raise ctx.fail("port must be 0..65535", "listen.port", listen, "port")

    providers_node = data.get("providers")
    if providers_node is None:
        raise ctx.fail("missing 'providers'", "providers")
    expect(ctx, providers_node, dict, "providers", data, "providers")
    providers = {n: _provider(ctx, n, p, providers_node, env, read_secrets) for n, p in providers_node.items()}

    cl = data.get("classifier", {})
    expect(ctx, cl, dict, "classifier", data, "classifier")
    check_keys(ctx, cl, {"min_score", "disable", "engines", "time_budget_ms"}, "classifier")
    min_score = cl.get("min_score", 0.5)
    expect(ctx, min_score, (int, float), "classifier.min_score", cl, "min_score")
    if not 0 <= min_score <= 1:
        raise ctx.fail("min_score must be between 0 and 1", "classifier.min_score", cl, "min_score")
    disable = _str_list(ctx, cl.get("disable", []), "classifier.disable", cl, "disable")
    for j, t in enumerate(disable):
        if t not in BUILTIN_TYPES:
            raise ctx.fail(f"unknown type {t!r}", f"classifier.disable[{j}]", cl["disable"], j)
    engines = _str_list(ctx, cl.get("engines", ["builtin"]), "classifier.engines", cl, "engines")
    for j, e in enumerate(engines):
        if e not in ("builtin", "presidio"):
            raise ctx.fail("engines are 'builtin' and 'presidio'", f"classifier.engines[{j}]", cl["engines"], j)
    if "builtin" not in engines:
        raise ctx.fail("the 'builtin' engine cannot be turned off", "classifier.engines", cl, "engines")
    budget = cl.get("time_budget_ms", 2000)
    expect(ctx, budget, int, "classifier.time_budget_ms", cl, "time_budget_ms")
    if not 10 <= budget <= 60_000:
        raise ctx.fail("time_budget_ms must be between 10 and 60000", "classifier.time_budget_ms", cl, "time_budget_ms")

    custom_node = data.get("custom_classes", {})
    expect(ctx, custom_node, dict, "custom_classes", data, "custom_classes")
    custom = tuple(_custom(ctx, n, c, custom_node) for n, c in custom_node.items())

    known = set(BUILTIN_TYPES) | set(GROUPS) | {"any", UNSCANNED} | {c.name for c in custom}
    if "routes" not in data:
        raise ctx.fail("missing 'routes'", "routes")
    rules = _rules(ctx, data["routes"], data, providers, known)

    max_body = data.get("max_body_bytes", 32 * 1024 * 1024)
    expect(ctx, max_body, int, "max_body_bytes", data, "max_body_bytes")
    decision_log = data.get("decision_log", "stderr")
    expect(ctx, decision_log, str, "decision_log", data, "decision_log")

    from clawfleet.router import limits_config as lc

    identity = lc.parse_identity(ctx, data.get("identity"), data, env, read_secrets)
    limits = lc.parse_limits(ctx, data.get("limits"), data)
    prices = lc.parse_prices(ctx, data.get("prices"), data, providers)
    lc.check_priced(ctx, limits, prices, providers, data)
    state_dir = data.get("state_dir")
    if state_dir is not None:
        expect(ctx, state_dir, str, "state_dir", data, "state_dir")
    elif limits.any:
        raise ctx.fail(
            "limits need a state_dir (e.g. /var/lib/clawfleet/router) so counts survive restarts",
            "limits",
            data,
            "limits",
        )
    metrics = data.get("metrics_listen", {})
    expect(ctx, metrics, dict, "metrics_listen", data, "metrics_listen")
    check_keys(ctx, metrics, {"host", "port"}, "metrics_listen")
    metrics_host = metrics.get("host", "127.0.0.1")
    expect(ctx, metrics_host, str, "metrics_listen.host", metrics, "host")
    metrics_port = metrics.get("port", 9484)
    if metrics_port is not None:
        expect(ctx, metrics_port, int, "metrics_listen.port", metrics, "port")
        if not 0 <= metrics_port <= 65535 or (metrics_port == port and port != 0):
            raise ctx.fail(
                "metrics port must be 0..65535 and differ from listen.port", "metrics_listen.port", metrics, "port"
            )
    retries = data.get("retries", {})
    expect(ctx, retries, dict, "retries", data, "retries")
    check_keys(ctx, retries, {"attempts", "backoff_ms"}, "retries")
    attempts = retries.get("attempts", 0)
    expect(ctx, attempts, int, "retries.attempts", retries, "attempts")
    backoff = retries.get("backoff_ms", 250)
    expect(ctx, backoff, int, "retries.backoff_ms", retries, "backoff_ms")
    if not 0 <= attempts <= 5 or not 0 <= backoff <= 10_000:
        raise ctx.fail("attempts must be 0..5 and backoff_ms 0..10000", "retries", data, "retries")
    watch = data.get("watch_config", True)
    expect(ctx, watch, bool, "watch_config", data, "watch_config")
    return RouterConfig(
        host=host,
        port=port,
        providers=providers,
        rules=rules,
        classifier=ClassifierOptions(float(min_score), disable, engines, budget),
        custom_classes=custom,
        max_body_bytes=max_body,
        decision_log=decision_log,
        source=source,
        identity=identity,
        limits=limits,
        prices=prices,
        state_dir=state_dir,
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        watch_config=watch,
        retry_attempts=attempts,
        retry_backoff_s=backoff / 1000,
    )


def load_config(
    path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None, read_secrets: bool = True
) -> RouterConfig:
    """Load a router config. The round-trip loader is ruamel's safe constructor plus line numbers."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror}", source=source) from None
    yaml = YAML(typ="rt", pure=True)
    try:
        data = yaml.load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"invalid YAML: {problem}", source=source, line=line) from None
    config = parse_config(data, source=source, env=env, read_secrets=read_secrets)
    return replace(config, digest=hashlib.sha256(text.encode()).hexdigest()[:16])


def default_config() -> RouterConfig:
    """What `router classify` uses without --config: anything sensitive to "local", the rest to "cloud"."""
    providers = {
        "local": Provider("local", "vllm", DEFAULT_BASE_URLS["vllm"], {"default": "local-model"}, local=True),
        "cloud": Provider("cloud", "openai", DEFAULT_BASE_URLS["openai"], {"default": "cloud-model"}, local=False),
    }
    rules = (
        Rule("sensitive-local", "local", frozenset({"any", UNSCANNED}), "local"),
        Rule("default", "cloud", None, "cloud"),
    )
    return RouterConfig("127.0.0.1", 8484, providers, rules, ClassifierOptions(), (), source="<default>")
