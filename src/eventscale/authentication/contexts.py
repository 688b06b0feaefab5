"""Each trigger's :class:`~eventscale.scalers.params.TriggerContext`, synchronously.

:func:`resolve_trigger_contexts` resolves every ``authenticationRef`` of a ScaledObject
or ScaledJob against TriggerAuthentications, Secrets and ConfigMaps given in memory
(:func:`resolve_trigger_authentication` does one TriggerAuthentication);
:func:`stream_trigger_contexts` does it for a manifest stream, as
:meth:`Manifests.trigger_contexts <eventscale.manifests.Manifests.trigger_contexts>`
does. The rules are KEDA's (see :mod:`eventscale.authentication._resolve`); where KEDA
carries on with an empty value, a :class:`~eventscale.errors.ConfigError` names the entry
that failed, never a value. :mod:`eventscale.authentication.resolver` resolves
asynchronously from mounted directories and the cluster too.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

from eventscale.authentication._resolve import (
    SYNC_WORDING,
    Reference,
    TriggerAuthentications,
    auth_table,
    build_trigger_contexts,
    describe,
    provider_errors,
    referenced_authentications,
    resolve_entries,
)
from eventscale.authentication.sources import (
    CONFIG_MAP,
    ManifestStream,
    SecretData,
    as_secret,
)
from eventscale.errors import ConfigError
from eventscale.redaction import Secret
from eventscale.spec import ScaledJobSpec, ScaledObjectSpec, TriggerAuthenticationSpec

if TYPE_CHECKING:
    from eventscale.scalers.params import TriggerContext

__all__ = (
    "resolve_trigger_authentication",
    "resolve_trigger_contexts",
    "stream_trigger_contexts",
)


def resolve_trigger_authentication(
    auth: TriggerAuthenticationSpec,
    *,
    secrets: Mapping[str, Mapping[str, str | Secret]] | None = None,
    config_maps: Mapping[str, Mapping[str, str]] | None = None,
    env: Mapping[str, str] | None = None,
    undecodable: Collection[tuple[str, str]] = (),
    used_by: str | None = None,
) -> dict[str, Secret]:
    """The auth parameters ``auth`` provides, as ``{parameter: Secret}``.

    ``secrets`` maps a Secret's name to its keys and values, ``config_maps`` the same for
    ConfigMaps, ``env`` is the scale target container's environment.

    :raises ConfigError: naming the entry of ``auth`` that cannot be resolved (a missing
        Secret, key, ConfigMap or variable; a provider eventscale cannot reach). Values
        are never part of the message.
    """
    secret_maps = secrets or {}
    cm_maps = config_maps or {}

    def fetch(ref: Reference) -> SecretData | None:
        if ref.kind == CONFIG_MAP:
            cm = cm_maps.get(ref.name)
            if cm is None:
                return None
            return SecretData(values={k: Secret(v) for k, v in cm.items()}, origin="")
        secret = secret_maps.get(ref.name)
        # A key listed as undecodable wins only where the Secret gives no value for it.
        broken = (ref.name, ref.key) in undecodable
        if secret is None and not broken:
            return None
        return SecretData(
            values={k: as_secret(v) for k, v in (secret or {}).items()},
            origin="",
            unreadable=frozenset({ref.key}) if broken else frozenset(),
        )

    who = describe(auth, used_by)
    errors = provider_errors(auth, who, SYNC_WORDING)
    params, more = resolve_entries(auth, who, env=env or {}, fetch=fetch, wording=SYNC_WORDING)
    errors += more
    ConfigError.collect(errors, what=f"cannot resolve {who}")
    return params


def resolve_trigger_contexts(
    spec: ScaledObjectSpec | ScaledJobSpec,
    *,
    trigger_authentications: TriggerAuthentications = (),
    secrets: Mapping[str, Mapping[str, str | Secret]] | None = None,
    config_maps: Mapping[str, Mapping[str, str]] | None = None,
    env: Mapping[str, str] | None = None,
    undecodable: Collection[tuple[str, str]] = (),
) -> tuple[TriggerContext, ...]:
    """One :class:`~eventscale.scalers.TriggerContext` per trigger of ``spec``, in order.

    ``trigger_authentications`` is a ``{(kind, name): spec}`` mapping or an iterable of
    specs; ``secrets`` and ``config_maps`` back their references; ``env`` (default: empty;
    pass ``os.environ`` to use the process environment) is both where ``env`` entries
    and the triggers' ``...FromEnv`` metadata are looked up.

    :raises ConfigError: every unresolvable reference, each with its path; a missing
        TriggerAuthentication is reported at ``spec.triggers[i].authenticationRef.name``.
    """
    table = auth_table(trigger_authentications)
    environment = dict(env or {})
    resolved: dict[tuple[str, str], Mapping[str, Secret] | ConfigError] = {}
    for key, ta, used_by in referenced_authentications(spec, table):
        try:
            resolved[key] = resolve_trigger_authentication(
                ta,
                secrets=secrets,
                config_maps=config_maps,
                env=environment,
                undecodable=undecodable,
                used_by=used_by,
            )
        except ConfigError as exc:
            resolved[key] = exc
    return build_trigger_contexts(spec, table, resolved, environment)


def stream_trigger_contexts(
    stream: ManifestStream,
    spec: ScaledObjectSpec | ScaledJobSpec,
    *,
    env: Mapping[str, str] | None = None,
    secrets: Mapping[str, Mapping[str, str | Secret]] | None = None,
) -> tuple[TriggerContext, ...]:
    """One :class:`~eventscale.scalers.TriggerContext` per trigger of ``spec``.

    Authentication references are resolved against the TriggerAuthentications, Secrets
    and ConfigMaps of ``stream`` (a :class:`~eventscale.manifests.Manifests`);
    ``secrets`` adds (or overrides, key by key) Secrets by name; ``env`` is the scale
    target container's environment.
    """
    merged: dict[str, Mapping[str, str | Secret]] = dict(stream.secrets)
    for name, values in (secrets or {}).items():
        merged[name] = {**merged.get(name, {}), **values}
    return resolve_trigger_contexts(
        spec,
        trigger_authentications=stream.trigger_authentications,
        secrets=merged,
        config_maps=stream.config_maps,
        env=env,
        undecodable=stream.undecodable_secret_keys,
    )
