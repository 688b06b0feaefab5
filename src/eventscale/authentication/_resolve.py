"""KEDA's trigger authentication rules, once, as pure functions over fetched objects.

This is KEDA's ``ResolveAuthRefAndPodIdentity`` (``pkg/scaling/resolver/scale_resolvers.go``)
for a library: a trigger's ``authenticationRef`` names a (Cluster)TriggerAuthentication,
whose ``env``, ``configMapTargetRef`` and ``secretTargetRef`` entries (applied in that
order, a later one overriding an earlier one for the same parameter, as KEDA does)
become the trigger's auth parameters, each wrapped in
:class:`~eventscale.redaction.Secret`.

Where KEDA logs an unresolvable reference and carries on with an empty value, eventscale
raises :class:`~eventscale.errors.ConfigError`: a missing Secret, key, ConfigMap or
environment variable is a configuration mistake, not a credential of ``""``.

The synchronous resolver (:mod:`eventscale.authentication.contexts`) feeds these rules
the Secrets and ConfigMaps it was given, the asynchronous one
(:mod:`eventscale.authentication.resolver`) the objects its sources returned.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Final, TypeAlias

import attrs

from eventscale.authentication.sources import CONFIG_MAP, SECRET, SecretData
from eventscale.errors import ConfigError
from eventscale.redaction import Secret
from eventscale.spec import (
    ScaledJobSpec,
    ScaledObjectSpec,
    TriggerAuthenticationSpec,
)

if TYPE_CHECKING:
    from eventscale.scalers.params import TriggerContext

__all__ = (
    "ASYNC_WORDING",
    "SYNC_WORDING",
    "Reference",
    "TriggerAuthentications",
    "Wording",
    "auth_table",
    "build_trigger_contexts",
    "describe",
    "AWS_POD_IDENTITY_TRIGGERS",
    "POD_IDENTITY_PROVIDERS",
    "pod_identity_params",
    "provider_errors",
    "referenced_authentications",
    "references",
    "resolve_entries",
)

TriggerAuthentications: TypeAlias = (
    Mapping[tuple[str, str], TriggerAuthenticationSpec] | Iterable[TriggerAuthenticationSpec]
)
"""TriggerAuthentications as a ``{(kind, name): spec}`` mapping or an iterable of specs."""

# ------------------------------------------------------------ the shared resolution rules


@attrs.frozen(kw_only=True)
class Wording:
    """How a resolver words the messages in which the two resolvers differ.

    :param pod_identity_note: appended to "podIdentity provider ... is not supported by
        eventscale".
    :param unreachable: the ``spec`` fields eventscale cannot read credentials from,
        each with the name of what it points at.
    :param unreachable_hint: what to use instead, after "cannot read credentials from".
    :param mention_origin: name where a found object came from in the missing-key and
        not-UTF-8 messages.
    """

    pod_identity_note: str
    unreachable: Mapping[str, str]
    unreachable_hint: str
    mention_origin: bool


_UNREACHABLE: Final = {
    "hashiCorpVault": "HashiCorp Vault",
    "azureKeyVault": "Azure Key Vault",
    "awsSecretManager": "AWS Secrets Manager",
    "gcpSecretManager": "GCP Secret Manager",
    "boundServiceAccountToken": "a bound service account token",
}

SYNC_WORDING: Final = Wording(
    pod_identity_note=", which only resolves secretTargetRef, configMapTargetRef and env",
    unreachable={**_UNREACHABLE, "filePath": "a file mounted in the KEDA operator"},
    unreachable_hint="use secretTargetRef or env instead",
    mention_origin=False,
)
"""The synchronous resolver's wording (it cannot read ``filePath``)."""

ASYNC_WORDING: Final = Wording(
    pod_identity_note="",
    unreachable=_UNREACHABLE,
    unreachable_hint="use secretTargetRef, configMapTargetRef, env or filePath instead",
    mention_origin=True,
)
"""The asynchronous resolver's wording (it reads ``filePath`` itself)."""


@attrs.frozen
class Reference:
    """One ``configMapTargetRef`` or ``secretTargetRef`` entry, found at ``path``."""

    kind: str
    path: str
    parameter: str
    name: str
    key: str


def describe(auth: TriggerAuthenticationSpec, used_by: str | None) -> str:
    """How messages name ``auth`` (and the trigger that uses it)."""
    return f"{auth.kind} {auth.name!r}" + (f" (used by {used_by})" if used_by else "")


def references(auth: TriggerAuthenticationSpec) -> list[Reference]:
    """The object references of ``auth`` in resolution order: ConfigMaps, then Secrets."""
    refs = [
        Reference(CONFIG_MAP, f"spec.configMapTargetRef[{j}]", r.parameter, r.name, r.key)
        for j, r in enumerate(auth.config_map_target_ref)
    ]
    refs += [
        Reference(SECRET, f"spec.secretTargetRef[{j}]", r.parameter, r.name, r.key)
        for j, r in enumerate(auth.secret_target_ref)
    ]
    return refs


POD_IDENTITY_PROVIDERS: Final = ("azure-workload", "aws")
"""The ``spec.podIdentity.provider`` values eventscale supports (docs/authentication.md,
Pod identity); the others are refused at ``spec.podIdentity.provider``."""

AWS_POD_IDENTITY_TRIGGERS: Final = ("kafka", "apache-kafka")
"""The trigger types that can use ``podIdentity`` ``aws`` (MSK IAM, docs/scalers/kafka.md);
another trigger given it is refused at its ``authenticationRef``."""

# KEDA's podIdentity fields passed on to the scalers as auth parameters
# (KEDA's apis/keda/v1alpha1/triggerauthentication_types.go, AuthPodIdentity).
_POD_IDENTITY_FIELDS: Final = (
    "identityId",
    "identityTenantId",
    "identityAuthorityHost",
    "roleArn",
    "externalID",
    "identityOwner",
)


def pod_identity_params(auth: TriggerAuthenticationSpec) -> dict[str, Secret]:
    """The pod identity of ``auth`` as auth parameters: ``podIdentity`` (the provider) and
    the overrides it sets (``identityId``, ``identityTenantId``, ``identityAuthorityHost``,
    ``roleArn``, ``externalID``, ``identityOwner``). Empty without a supported provider.
    """
    pid = auth.pod_identity or {}
    provider = pid.get("provider")
    if provider not in POD_IDENTITY_PROVIDERS:
        return {}
    params = {"podIdentity": Secret(str(provider))}
    for name in _POD_IDENTITY_FIELDS:
        value = pid.get(name)
        if isinstance(value, str) and value:
            params[name] = Secret(value)
    return params


def provider_errors(
    auth: TriggerAuthenticationSpec, who: str, wording: Wording
) -> list[ConfigError]:
    """An error for a pod identity provider and one for each source eventscale cannot read."""
    errors: list[ConfigError] = []
    provider = (auth.pod_identity or {}).get("provider")
    if provider not in (None, "", "none", *POD_IDENTITY_PROVIDERS):
        errors.append(
            ConfigError(
                f"{who}: podIdentity provider {provider!r} is not supported by eventscale"
                + wording.pod_identity_note,
                path="spec.podIdentity.provider",
            )
        )
    for field, label in wording.unreachable.items():
        if field in auth.other:
            errors.append(
                ConfigError(
                    f"{who}: eventscale cannot read credentials from {label}; "
                    + wording.unreachable_hint,
                    path=f"spec.{field}",
                )
            )
    return errors


def resolve_entries(
    auth: TriggerAuthenticationSpec,
    who: str,
    *,
    env: Mapping[str, str],
    fetch: Callable[[Reference], SecretData | None],
    wording: Wording,
    searched: str | None = None,
    env_origin: str | None = None,
    container_envs: Mapping[str, Mapping[str, str]] | None = None,
) -> tuple[dict[str, Secret], list[ConfigError]]:
    """The ``env``, ``configMapTargetRef`` and ``secretTargetRef`` entries of ``auth``.

    Applied in that order, a later entry overriding an earlier one for the same
    parameter. ``fetch`` gives the object a reference names (``None`` when there is
    none) or raises :class:`ConfigError` when it cannot be read; ``searched`` (where
    it was looked for) is added to a not-found message. An ``env`` entry with a
    ``containerName`` found in ``container_envs`` reads that container's environment.

    :returns: the parameters found, and an error for every entry that failed.
    """
    errors: list[ConfigError] = []
    params: dict[str, Secret] = pod_identity_params(auth)
    for j, env_ref in enumerate(auth.env):
        source, origin = env, env_origin
        named = env_ref.container_name
        if named and container_envs is not None and named in container_envs:
            source, origin = container_envs[named], f"container {named!r}"
        if env_ref.name in source:
            params[env_ref.parameter] = Secret(source[env_ref.name])
        else:
            errors.append(
                ConfigError(
                    f"{who}: environment variable {env_ref.name!r} is not set in "
                    + (origin or "the given environment (pass the scale target's as env=...)"),
                    path=f"spec.env[{j}].name",
                )
            )
    for ref in references(auth):
        kind, name, key = ref.kind, ref.name, ref.key
        try:
            data = fetch(ref)
        except ConfigError as exc:
            errors.append(ConfigError(f"{who}: {exc.reason}", path=f"{ref.path}.name"))
            continue
        if data is None:
            note = f" ({searched})" if searched is not None else ""
            errors.append(
                ConfigError(f"{who}: {kind} {name!r} not found{note}", path=f"{ref.path}.name")
            )
            continue
        where = f" in {data.origin}" if wording.mention_origin else ""
        if key in data.values:
            params[ref.parameter] = data.values[key]
        elif key in data.unreadable:
            errors.append(
                ConfigError(
                    f"{who}: {kind} {name!r} key {key!r}{where} is not UTF-8 "
                    "text (value not shown)",
                    path=f"{ref.path}.key",
                )
            )
        else:
            errors.append(
                ConfigError(
                    f"{who}: {kind} {name!r}{where} has no key {key!r}",
                    path=f"{ref.path}.key",
                )
            )
    return params, errors


def auth_table(
    auths: TriggerAuthentications,
) -> Mapping[tuple[str, str], TriggerAuthenticationSpec]:
    """``auths`` as a ``{(kind, name): spec}`` mapping."""
    if isinstance(auths, Mapping):
        return auths
    return {(ta.kind, ta.name): ta for ta in auths}


def referenced_authentications(
    spec: ScaledObjectSpec | ScaledJobSpec,
    table: Mapping[tuple[str, str], TriggerAuthenticationSpec],
) -> list[tuple[tuple[str, str], TriggerAuthenticationSpec, str]]:
    """Each (Cluster)TriggerAuthentication of ``table`` that ``spec`` uses, once, in order.

    Each comes as ``(key, spec, path of the first trigger that uses it)``.
    """
    seen: dict[tuple[str, str], tuple[tuple[str, str], TriggerAuthenticationSpec, str]] = {}
    for i, trig in enumerate(spec.triggers):
        ref = trig.authentication_ref
        if ref is None:
            continue
        key = (ref.kind, ref.name)
        ta = table.get(key)
        if ta is not None and key not in seen:
            seen[key] = (key, ta, f"spec.triggers[{i}]")
    return list(seen.values())


def _aws_identity_errors(
    auth: Mapping[str, Secret], trigger_type: str, name: str, path: str
) -> list[ConfigError]:
    provider = auth.get("podIdentity")
    if provider is None or provider.reveal() != "aws":
        return []
    if trigger_type in AWS_POD_IDENTITY_TRIGGERS:
        return []
    return [
        ConfigError(
            f"{trigger_type}: podIdentity provider 'aws' of {name!r} is only supported by "
            + " and ".join(AWS_POD_IDENTITY_TRIGGERS)
            + " (sasl aws_msk_iam)",
            path=f"{path}.authenticationRef.name",
        )
    ]


def build_trigger_contexts(
    spec: ScaledObjectSpec | ScaledJobSpec,
    table: Mapping[tuple[str, str], TriggerAuthenticationSpec],
    resolved: Mapping[tuple[str, str], Mapping[str, Secret] | ConfigError],
    env: dict[str, str],
    env_origin: str | None = None,
) -> tuple[TriggerContext, ...]:
    """One context per trigger of ``spec``, from already ``resolved`` authentications.

    ``resolved`` holds, for each key :func:`referenced_authentications` gave, its
    parameters or the :class:`ConfigError` resolving it raised.

    :raises ConfigError: a missing TriggerAuthentication (at
        ``spec.triggers[i].authenticationRef.name``) and the errors of ``resolved``,
        each reported once, where the first trigger that uses it stands.
    """
    from eventscale.scalers.params import TriggerContext

    errors: list[ConfigError] = []
    reported: set[tuple[str, str]] = set()
    contexts: list[TriggerContext] = []
    for i, trig in enumerate(spec.triggers):
        path = f"spec.triggers[{i}]"
        auth: dict[str, Secret] = {}
        ref = trig.authentication_ref
        if ref is not None:
            key = (ref.kind, ref.name)
            if table.get(key) is None:
                errors.append(
                    ConfigError(
                        f"{ref.kind} {ref.name!r} not found",
                        path=f"{path}.authenticationRef.name",
                    )
                )
            else:
                outcome = resolved[key]
                if not isinstance(outcome, ConfigError):
                    auth = dict(outcome)
                    errors.extend(_aws_identity_errors(auth, trig.type, ref.name, path))
                elif key not in reported:
                    errors.extend(outcome.errors or (outcome,))
                reported.add(key)
        contexts.append(
            TriggerContext(
                metadata=dict(trig.metadata),
                auth=auth,
                env=env,
                index=i,
                name=trig.name,
                trigger_type=trig.type,
                metric_type=trig.metric_type,
                use_cached_metrics=trig.use_cached_metrics,
                path=path,
                object_name=spec.name,
                object_namespace=spec.namespace,
                **({"env_origin": env_origin} if env_origin else {}),
            )
        )
    ConfigError.collect(errors, what=f"cannot resolve the triggers of {spec.name!r}")
    return tuple(contexts)
