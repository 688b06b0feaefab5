"""Build each trigger's :class:`~eventscale.scalers.TriggerContext` from a spec.

This is KEDA's ``ResolveAuthRefAndPodIdentity`` for a library: a trigger's
``authenticationRef`` names a (Cluster)TriggerAuthentication, whose ``env``,
``configMapTargetRef`` and ``secretTargetRef`` entries (applied in that order, a later
one overriding an earlier one for the same parameter, as KEDA does) become the
trigger's auth parameters, each wrapped in :class:`~eventscale.auth.Secret`.

Where KEDA logs an unresolvable reference and carries on with an empty value, eventscale
raises :class:`~eventscale.errors.ConfigError`: a missing Secret, key, ConfigMap or
environment variable is a configuration mistake, not a credential of ``""``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING

from eventscale.auth import Secret
from eventscale.errors import ConfigError
from eventscale.spec import (
    ScaledJobSpec,
    ScaledObjectSpec,
    TriggerAuthenticationSpec,
)

if TYPE_CHECKING:
    from eventscale.scalers._params import TriggerContext

__all__ = ("resolve_trigger_authentication", "resolve_trigger_contexts")

_UNRESOLVABLE = {
    "hashiCorpVault": "HashiCorp Vault",
    "azureKeyVault": "Azure Key Vault",
    "awsSecretManager": "AWS Secrets Manager",
    "gcpSecretManager": "GCP Secret Manager",
    "boundServiceAccountToken": "a bound service account token",
    "filePath": "a file mounted in the KEDA operator",
}

TriggerAuthentications = (
    Mapping[tuple[str, str], TriggerAuthenticationSpec] | Iterable[TriggerAuthenticationSpec]
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
    secrets = secrets or {}
    config_maps = config_maps or {}
    env = env or {}
    who = f"{auth.kind} {auth.name!r}" + (f" (used by {used_by})" if used_by else "")
    errors: list[ConfigError] = []
    params: dict[str, Secret] = {}

    provider = (auth.pod_identity or {}).get("provider")
    if provider not in (None, "", "none"):
        errors.append(
            ConfigError(
                f"{who}: podIdentity provider {provider!r} is not supported by eventscale, "
                "which only resolves secretTargetRef, configMapTargetRef and env",
                path="spec.podIdentity.provider",
            )
        )
    for key, label in _UNRESOLVABLE.items():
        if key in auth.other:
            errors.append(
                ConfigError(
                    f"{who}: eventscale cannot read credentials from {label}; "
                    "use secretTargetRef or env instead",
                    path=f"spec.{key}",
                )
            )

    for j, env_ref in enumerate(auth.env):
        if env_ref.name in env:
            params[env_ref.parameter] = Secret(env[env_ref.name])
        else:
            errors.append(
                ConfigError(
                    f"{who}: environment variable {env_ref.name!r} is not set "
                    "(pass the scale target's environment as env=...)",
                    path=f"spec.env[{j}].name",
                )
            )
    for j, cm_ref in enumerate(auth.config_map_target_ref):
        cm = config_maps.get(cm_ref.name)
        if cm is None:
            errors.append(
                ConfigError(
                    f"{who}: ConfigMap {cm_ref.name!r} not found",
                    path=f"spec.configMapTargetRef[{j}].name",
                )
            )
        elif cm_ref.key not in cm:
            errors.append(
                ConfigError(
                    f"{who}: ConfigMap {cm_ref.name!r} has no key {cm_ref.key!r}",
                    path=f"spec.configMapTargetRef[{j}].key",
                )
            )
        else:
            params[cm_ref.parameter] = Secret(cm[cm_ref.key])
    for j, secret_ref in enumerate(auth.secret_target_ref):
        secret = secrets.get(secret_ref.name)
        if (secret_ref.name, secret_ref.key) in undecodable and (
            secret is None or secret_ref.key not in secret
        ):
            errors.append(
                ConfigError(
                    f"{who}: Secret {secret_ref.name!r} key {secret_ref.key!r} "
                    "is not UTF-8 text (value not shown)",
                    path=f"spec.secretTargetRef[{j}].key",
                )
            )
        elif secret is None:
            errors.append(
                ConfigError(
                    f"{who}: Secret {secret_ref.name!r} not found",
                    path=f"spec.secretTargetRef[{j}].name",
                )
            )
        elif secret_ref.key not in secret:
            errors.append(
                ConfigError(
                    f"{who}: Secret {secret_ref.name!r} has no key {secret_ref.key!r}",
                    path=f"spec.secretTargetRef[{j}].key",
                )
            )
        else:
            params[secret_ref.parameter] = _as_secret(secret[secret_ref.key])
    ConfigError.collect(errors, what=f"cannot resolve {who}")
    return params


def _as_secret(value: str | Secret) -> Secret:
    return value if isinstance(value, Secret) else Secret(value)


def _auth_table(
    auths: TriggerAuthentications,
) -> Mapping[tuple[str, str], TriggerAuthenticationSpec]:
    if isinstance(auths, Mapping):
        return auths
    return {(ta.kind, ta.name): ta for ta in auths}


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
    from eventscale.scalers._params import TriggerContext

    table = _auth_table(trigger_authentications)
    environment = dict(env or {})
    errors: list[ConfigError] = []
    resolved: dict[tuple[str, str], dict[str, Secret] | None] = {}
    contexts: list[TriggerContext] = []
    for i, trig in enumerate(spec.triggers):
        path = f"spec.triggers[{i}]"
        auth: dict[str, Secret] = {}
        ref = trig.authentication_ref
        if ref is not None:
            key = (ref.kind, ref.name)
            ta = table.get(key)
            if ta is None:
                errors.append(
                    ConfigError(
                        f"{ref.kind} {ref.name!r} not found",
                        path=f"{path}.authenticationRef.name",
                    )
                )
            else:
                if key not in resolved:
                    try:
                        resolved[key] = resolve_trigger_authentication(
                            ta,
                            secrets=secrets,
                            config_maps=config_maps,
                            env=environment,
                            undecodable=undecodable,
                            used_by=path,
                        )
                    except ConfigError as exc:
                        resolved[key] = None
                        errors.extend(exc.errors or (exc,))
                auth = dict(resolved[key] or {})
        contexts.append(
            TriggerContext(
                metadata=dict(trig.metadata),
                auth=auth,
                env=environment,
                index=i,
                name=trig.name,
                trigger_type=trig.type,
                metric_type=trig.metric_type,
                use_cached_metrics=trig.use_cached_metrics,
                path=path,
                object_name=spec.name,
                object_namespace=spec.namespace,
            )
        )
    ConfigError.collect(errors, what=f"cannot resolve the triggers of {spec.name!r}")
    return tuple(contexts)
