"""Embedded Kubernetes types (EnvVar, Volume, Toleration...) with the API server's own rules.

The worker spec passes these through into the Deployment and CronJobs. Instead of
preserve-unknown-fields, each has a model here whose schema (patterns, enums, CEL) goes
into the CRD and whose validators run in the operator, so `kubectl apply` refuses what the
API server would refuse in the children, naming the user's field. The rules follow
kube-apiserver 1.34's `pkg/apis/core/validation` (cited per rule); each regex is one
string used by both pydantic and CEL (RE2 and Python agree on this subset).

The fields of `WorkerSpec` stay plain dicts (what the user wrote, passed through as is):
`embedded(Model)` validates a dict against Model and keeps the dict.
"""

from __future__ import annotations

import re
from fractions import Fraction
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonDict
from pydantic_core import core_schema

from taskqueue_operator.api.base import ApiModel, cel

# ------------------------------------------------------------------ names and values

# validation.IsDNS1123Label / IsDNS1123Subdomain (apimachinery).
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
# IsQualifiedName: [prefix/]name, prefix a DNS subdomain (<= 253), name <= 63.
_QUALIFIED_NAME_PART = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
QUALIFIED_NAME_PATTERN = (
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    + _QUALIFIED_NAME_PART
    + "$"
)
# IsValidLabelValue: empty, or a qualified name part.
LABEL_VALUE_PATTERN = rf"^({_QUALIFIED_NAME_PART})?$"
# IsRelaxedEnvVarName (RelaxedEnvironmentVariableValidation is GA and locked on in 1.34):
# printable ASCII (space included) except '='.
ENV_VAR_NAME_PATTERN = r"^[ -<>-~]+$"
# IsConfigMapKey: <= 253 of [-._a-zA-Z0-9], not '.', '..' or starting with '..'.
CONFIG_MAP_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
# resource.ParseQuantity's grammar, without the sign: ValidateNonnegativeQuantity refuses
# negative values (a leading '+' is accepted by both).
QUANTITY_PATTERN = r"^\+?([0-9]+(\.[0-9]*)?|\.[0-9]+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
# Kubernetes sets no length limit; CEL's cost estimate needs one (a quantity this long
# would not fit int64 anyway).
QUANTITY_MAX_LENGTH = 64
# validateLocalDescendingPath as a pattern (patterns cost nothing in CEL's budget): not
# absolute, no '..' element.
_SEGMENT = r"(\.|[^/.][^/]*|\.[^/.][^/]*|\.\.[^/]+)"
RELATIVE_PATH_PATTERN = rf"^{_SEGMENT}(/({_SEGMENT})?)*$"
# PodSpec gets an emptyDir named "tmp" mounted at /tmp (reconcile/podspec.py): user
# volumes and mounts must not collide with it (the API server refuses duplicates).
RESERVED_VOLUME = "tmp"
RESERVED_MOUNT_PATH = "/tmp"

_QUALIFIED = re.compile(QUALIFIED_NAME_PATTERN)
_QUANTITY = re.compile(QUANTITY_PATTERN)


def qualified_name_ok(name: str) -> bool:
    """validation.IsQualifiedName."""
    prefix = name.rsplit("/", 1)[0] if "/" in name else ""
    return bool(_QUALIFIED.match(name)) and len(prefix) <= 253


# The CEL twin of qualified_name_ok, for a variable named `k`.
def _cel_qualified(var: str) -> str:
    return (
        f"{var}.matches(r'{QUALIFIED_NAME_PATTERN}') && "
        f"(!{var}.contains('/') || {var}.indexOf('/') <= 253)"
    )


def config_map_key_ok(key: str) -> bool:
    return (
        len(key) <= 253
        and bool(re.match(CONFIG_MAP_KEY_PATTERN, key))
        and key not in (".", "..")
        and not key.startswith("..")
    )


def _check_config_map_key(key: str) -> str:
    if not config_map_key_ok(key):
        raise ValueError(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.', "
            "and not be or start with '..'"
        )
    return key


ConfigMapKey = Annotated[
    str,
    Field(min_length=1, max_length=253, pattern=CONFIG_MAP_KEY_PATTERN),
    AfterValidator(_check_config_map_key),
    Field(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self != '.' && !self.startsWith('..')",
                    "a key must not be '.' or start with '..'",
                )
            ]
        }
    ),
]
DnsSubdomain = Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN_PATTERN)]
DnsLabel = Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)]
LabelValue = Annotated[str, Field(max_length=63, pattern=LABEL_VALUE_PATTERN)]

# ------------------------------------------------------------------------ quantities

_SUFFIX = {
    "": Fraction(1),
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    **{f"{p}i": Fraction(1024 ** (i + 1)) for i, p in enumerate("KMGTPE")},
}


def parse_quantity(value: int | str) -> Fraction:
    """The value of a non-negative Kubernetes quantity; ValueError when it is not one."""
    if isinstance(value, bool):
        raise ValueError("a quantity is a number or a string such as 500m, 1, 2Gi")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("must be greater than or equal to 0")
        return Fraction(value)
    if len(value) > QUANTITY_MAX_LENGTH or not _QUANTITY.match(value):
        raise ValueError(
            f"quantity {value!r} must match the Kubernetes quantity grammar "
            "(e.g. 500m, 1, 1.5, 2Gi, 1e3) and not be negative"
        )
    number = value.lstrip("+")
    match = re.match(r"^([0-9]*\.?[0-9]*)(.*)$", number)
    assert match is not None
    digits, suffix = match.groups()
    base = Fraction(digits if digits not in ("", ".") else "0")
    if suffix[:1] in ("e", "E"):
        return base * Fraction(10) ** int(suffix[1:])
    return base * _SUFFIX[suffix]


def _check_quantity(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError("a quantity is a number or a string such as 500m, 1, 2Gi")
    parse_quantity(value)
    return value


# One validator (a clear message, the value kept as written) and the CRD's int-or-string
# with the grammar as its pattern.
Quantity = Annotated[
    int | str,
    PlainValidator(_check_quantity),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "integer", "minimum": 0},
                {"type": "string", "pattern": QUANTITY_PATTERN, "maxLength": QUANTITY_MAX_LENGTH},
            ]
        }
    ),
]

# --------------------------------------------------------- embedding a model as a dict


class _Embedded:
    """Validate a dict against `model`, keep the dict; the schema is the model's."""

    def __init__(self, model: type[ApiModel]) -> None:
        self.model = model

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def keep(value: Any, validate: core_schema.ValidatorFunctionWrapHandler) -> Any:
            validate(value)
            return value

        # Serialized as the dict it is (not as the model it was checked against).
        return core_schema.no_info_wrap_validator_function(
            keep,
            handler(self.model),
            serialization=core_schema.plain_serializer_function_ser_schema(lambda value: value),
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        return handler(schema)


def embedded(model: type[ApiModel]) -> Any:
    """`Annotated[dict[str, Any], embedded(EnvVar)]`: a dict checked as an EnvVar."""
    return _Embedded(model)


class KubeModel(ApiModel):
    """An embedded Kubernetes type: the same wire names, unknown fields refused."""


# ------------------------------------------------------------------------------- env


class ObjectFieldSelector(KubeModel):
    """A field of the pod (downward API)."""  # validateObjectFieldSelector

    api_version: Literal["v1"] | None = Field(default=None, description="Only v1.")
    field_path: str = Field(
        max_length=512,
        pattern=r"^(metadata\.name|metadata\.namespace|metadata\.uid|spec\.nodeName|"
        r"spec\.serviceAccountName|status\.hostIPs?|status\.podIPs?|"
        r"metadata\.(labels|annotations)\['[^']+'\])$",
        description="metadata.name, metadata.namespace, metadata.uid, spec.nodeName, "
        "spec.serviceAccountName, status.hostIP(s), status.podIP(s), "
        "metadata.labels['<key>'] or metadata.annotations['<key>'].",
    )

    @model_validator(mode="after")
    def _subscript_is_a_qualified_name(self) -> ObjectFieldSelector:
        match = re.match(r"^metadata\.(labels|annotations)\['(.*)'\]$", self.field_path)
        if match:
            key = match.group(2).lower() if match.group(1) == "annotations" else match.group(2)
            if not qualified_name_ok(key):
                raise ValueError(f"fieldPath {self.field_path!r}: the key must be a label key")
        return self

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!self.fieldPath.startsWith('metadata.labels[') || "
                    + _cel_qualified("self.fieldPath.substring(17, size(self.fieldPath) - 2)"),
                    "fieldPath: the label key must be a qualified name",
                    ".fieldPath",
                ),
                cel(
                    "!self.fieldPath.startsWith('metadata.annotations[') || "
                    + _cel_qualified(
                        "self.fieldPath.substring(22, size(self.fieldPath) - 2).lowerAscii()"
                    ),
                    "fieldPath: the annotation key must be a qualified name",
                    ".fieldPath",
                ),
            ]
        }
    )


_CPU_DIVISORS = ["1m", "1"]
_BYTE_DIVISORS = ["1", *(f"1{s}" for s in "kMGTPE"), *(f"1{s}i" for s in "KMGTPE")]


class ResourceFieldSelector(KubeModel):
    """A request or limit of a container."""  # validateContainerResourceFieldSelector

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.divisor) || (self.resource.endsWith('.cpu') ? "
                    f"string(self.divisor) in {_CPU_DIVISORS} : "
                    f"string(self.divisor) in {_BYTE_DIVISORS})",
                    "divisor must be 1m or 1 for cpu, and one of 1, 1k..1E, 1Ki..1Ei otherwise",
                    ".divisor",
                )
            ]
        }
    )

    container_name: str | None = Field(default=None, max_length=63)
    resource: str = Field(
        max_length=128,
        pattern=r"^(limits|requests)\.(cpu|memory|ephemeral-storage|hugepages-.+)$",
    )
    divisor: Quantity | None = None

    @model_validator(mode="after")
    def _divisor(self) -> ResourceFieldSelector:
        if self.divisor is not None:
            allowed = _CPU_DIVISORS if self.resource.endswith(".cpu") else _BYTE_DIVISORS
            if str(self.divisor) not in allowed:
                raise ValueError(f"divisor must be one of {', '.join(allowed)}")
        return self


class KeySelector(KubeModel):
    """A key of a ConfigMap or Secret."""  # validateConfigMapKeySelector, SecretKeySelector

    name: DnsSubdomain
    key: ConfigMapKey
    optional: bool | None = None


ENV_SOURCES = ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")


def _exactly_one(fields: tuple[str, ...], message: str) -> JsonDict:
    present = ", ".join(f"has(self.{f})" for f in fields)
    return cel(f"[{present}].filter(x, x).size() == 1", message)


def _count_set(model: ApiModel, fields: tuple[str, ...]) -> int:
    data = model.model_dump(by_alias=True, exclude_none=True)
    return sum(1 for f in fields if f in data)


class EnvVarSource(KubeModel):
    """Where the value comes from: exactly one source."""  # validateEnvVarValueFrom

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _exactly_one(
                    ENV_SOURCES,
                    "valueFrom must set exactly one of fieldRef, resourceFieldRef, "
                    "configMapKeyRef, secretKeyRef",
                )
            ]
        }
    )

    field_ref: ObjectFieldSelector | None = None
    resource_field_ref: ResourceFieldSelector | None = None
    config_map_key_ref: KeySelector | None = None
    secret_key_ref: KeySelector | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EnvVarSource:
        if _count_set(self, ENV_SOURCES) != 1:
            raise ValueError("valueFrom must set exactly one of " + ", ".join(ENV_SOURCES))
        return self


class EnvVar(KubeModel):
    """A Kubernetes EnvVar."""  # ValidateEnv

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.valueFrom) || !has(self.value) || self.value == ''",
                    "set value or valueFrom, not both",
                    ".valueFrom",
                )
            ]
        }
    )

    name: str = Field(
        min_length=1,
        max_length=4096,
        pattern=ENV_VAR_NAME_PATTERN,
        description="Printable ASCII characters other than '=' (Kubernetes 1.34 rules).",
    )
    value: str | None = None
    value_from: EnvVarSource | None = None

    @model_validator(mode="after")
    def _value_or_source(self) -> EnvVar:
        if self.value and self.value_from is not None:
            raise ValueError(f"env {self.name!r}: set value or valueFrom, not both")
        return self


class NamedRef(KubeModel):
    """A ConfigMap or Secret by name."""  # validateConfigMapEnvSource, SecretEnvSource

    name: DnsSubdomain
    optional: bool | None = None


ENV_FROM_SOURCES = ("configMapRef", "secretRef")


class EnvFromSource(KubeModel):
    """A Kubernetes EnvFromSource: exactly one of configMapRef, secretRef."""  # ValidateEnvFrom

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                _exactly_one(
                    ENV_FROM_SOURCES, "envFrom must set exactly one of configMapRef, secretRef"
                )
            ]
        }
    )

    prefix: str | None = Field(default=None, max_length=4096, pattern=r"^[ -<>-~]*$")
    config_map_ref: NamedRef | None = None
    secret_ref: NamedRef | None = None

    @model_validator(mode="after")
    def _one_source(self) -> EnvFromSource:
        if _count_set(self, ENV_FROM_SOURCES) != 1:
            raise ValueError("envFrom must set exactly one of configMapRef, secretRef")
        return self


# --------------------------------------------------------------------------- volumes


def _relative_path_ok(path: str) -> bool:
    """validateLocalDescendingPath: relative, no '..' element."""
    return not path.startswith("/") and ".." not in path.split("/")


def _check_relative(path: str) -> str:
    if not _relative_path_ok(path):
        raise ValueError("must be a relative path without '..'")
    return path


RelativePath = Annotated[
    str,
    Field(min_length=1, max_length=1024, pattern=RELATIVE_PATH_PATTERN),
    AfterValidator(_check_relative),
]


class KeyToPath(KubeModel):
    key: ConfigMapKey
    path: RelativePath
    mode: int | None = Field(default=None, ge=0, le=0o777)


class ConfigMapVolume(KubeModel):
    name: DnsSubdomain
    items: list[KeyToPath] | None = Field(default=None, max_length=64)
    default_mode: int | None = Field(default=None, ge=0, le=0o777)
    optional: bool | None = None


class SecretVolume(KubeModel):
    secret_name: DnsSubdomain
    items: list[KeyToPath] | None = Field(default=None, max_length=64)
    default_mode: int | None = Field(default=None, ge=0, le=0o777)
    optional: bool | None = None


class PersistentVolumeClaimVolume(KubeModel):
    claim_name: DnsSubdomain
    read_only: bool | None = None


class EmptyDirVolume(KubeModel):
    medium: str | None = Field(default=None, pattern=r"^(|Memory|HugePages(-.+)?)$")
    size_limit: Quantity | None = None


class HostPathVolume(KubeModel):
    path: str = Field(min_length=1, max_length=4096)
    type: (
        Literal[
            "",
            "DirectoryOrCreate",
            "Directory",
            "FileOrCreate",
            "File",
            "Socket",
            "CharDevice",
            "BlockDevice",
        ]
        | None
    ) = None


_OPAQUE = {"x-kubernetes-preserve-unknown-fields": True}
# Volume sources beyond the common five are passed through as objects (their inner rules
# are left to the API server's dry-run of the children).
OPAQUE_VOLUME_SOURCES = (
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "downwardAPI",
    "ephemeral",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "image",
    "iscsi",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
)
TYPED_VOLUME_SOURCES = ("configMap", "secret", "persistentVolumeClaim", "emptyDir", "hostPath")
VOLUME_SOURCES = TYPED_VOLUME_SOURCES + OPAQUE_VOLUME_SOURCES


def _opaque_sources() -> dict[str, Any]:
    return {
        name: {"type": "object", "description": f"A Kubernetes {name} volume source."} | _OPAQUE
        for name in OPAQUE_VOLUME_SOURCES
    }


class Volume(KubeModel):
    """A Kubernetes Volume: a DNS-1123 label name and exactly one source."""  # ValidateVolumes

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra=lambda schema: _volume_schema(schema),
    )

    name: DnsLabel
    config_map: ConfigMapVolume | None = None
    secret: SecretVolume | None = None
    persistent_volume_claim: PersistentVolumeClaimVolume | None = None
    empty_dir: EmptyDirVolume | None = None
    host_path: HostPathVolume | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Volume:
        if self.name == RESERVED_VOLUME:
            raise ValueError(f"volume name {RESERVED_VOLUME!r} is the operator's own /tmp")
        extra = self.model_extra or {}
        unknown = sorted(set(extra) - set(OPAQUE_VOLUME_SOURCES))
        if unknown:
            raise ValueError(f"unknown volume field(s): {', '.join(unknown)}")
        for name, value in extra.items():
            if not isinstance(value, dict):
                raise ValueError(f"volume source {name} must be an object")
        if _count_set(self, TYPED_VOLUME_SOURCES) + len(extra) != 1:
            raise ValueError(f"volume {self.name!r} must set exactly one volume source")
        return self


def _volume_schema(schema: dict[str, Any]) -> None:
    schema["properties"].update(_opaque_sources())
    schema.pop("additionalProperties", None)
    schema["x-kubernetes-validations"] = [
        _exactly_one(VOLUME_SOURCES, "a volume must set exactly one volume source"),
        cel(
            f"self.name != '{RESERVED_VOLUME}'",
            f"the volume name '{RESERVED_VOLUME}' is the operator's own /tmp: pick another",
            ".name",
        ),
    ]


class VolumeMount(KubeModel):
    """A Kubernetes VolumeMount."""  # ValidateVolumeMounts

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.subPath) || !has(self.subPathExpr)",
                    "subPathExpr and subPath are mutually exclusive",
                    ".subPathExpr",
                ),
                cel(
                    f"self.mountPath != '{RESERVED_MOUNT_PATH}'",
                    f"{RESERVED_MOUNT_PATH} is the operator's own emptyDir: mount elsewhere",
                    ".mountPath",
                ),
                cel(
                    "!has(self.recursiveReadOnly) || self.recursiveReadOnly == 'Disabled' || "
                    "(has(self.readOnly) && self.readOnly && (!has(self.mountPropagation) || "
                    "self.mountPropagation == 'None'))",
                    "recursiveReadOnly needs readOnly: true and mountPropagation None or unset",
                    ".recursiveReadOnly",
                ),
            ]
        }
    )

    name: str = Field(min_length=1, max_length=63)
    mount_path: str = Field(min_length=1, max_length=4096)
    read_only: bool | None = None
    sub_path: RelativePath | None = None
    sub_path_expr: RelativePath | None = None
    # Bidirectional is for privileged containers only, and ours never are.
    mount_propagation: Literal["None", "HostToContainer"] | None = None
    recursive_read_only: Literal["Disabled", "IfPossible", "Enabled"] | None = None

    @model_validator(mode="after")
    def _rules(self) -> VolumeMount:
        if self.sub_path is not None and self.sub_path_expr is not None:
            raise ValueError("subPathExpr and subPath are mutually exclusive")
        if self.mount_path == RESERVED_MOUNT_PATH:
            raise ValueError(f"{RESERVED_MOUNT_PATH} is the operator's own emptyDir")
        if self.recursive_read_only not in (None, "Disabled") and (
            not self.read_only or self.mount_propagation not in (None, "None")
        ):
            raise ValueError("recursiveReadOnly needs readOnly: true and mountPropagation None")
        return self


# ----------------------------------------------------------------------- scheduling


class Toleration(KubeModel):
    """A Kubernetes Toleration."""  # ValidateTolerations

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "(has(self.key) && self.key != '') || "
                    "(has(self.operator) && self.operator == 'Exists')",
                    "operator must be Exists when key is empty",
                    ".operator",
                ),
                cel(
                    "!has(self.tolerationSeconds) || (has(self.effect) && "
                    "self.effect == 'NoExecute')",
                    "effect must be NoExecute when tolerationSeconds is set",
                    ".effect",
                ),
                cel(
                    "!has(self.operator) || self.operator != 'Exists' || "
                    "!has(self.value) || self.value == ''",
                    "value must be empty when operator is Exists",
                    ".value",
                ),
                cel(
                    "!has(self.key) || self.key == '' || (" + _cel_qualified("self.key") + ")",
                    "key must be a label key (a qualified name such as example.com/gpu)",
                    ".key",
                ),
            ]
        }
    )

    key: str | None = Field(default=None, max_length=317)
    operator: Literal["Exists", "Equal", ""] | None = None
    value: LabelValue | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute", ""] | None = None
    toleration_seconds: int | None = None

    @model_validator(mode="after")
    def _rules(self) -> Toleration:
        if not self.key and self.operator != "Exists":
            raise ValueError("operator must be Exists when key is empty")
        if self.toleration_seconds is not None and self.effect != "NoExecute":
            raise ValueError("effect must be NoExecute when tolerationSeconds is set")
        if self.operator == "Exists" and self.value:
            raise ValueError("value must be empty when operator is Exists")
        if self.key and not qualified_name_ok(self.key):
            raise ValueError("key must be a label key (a qualified name)")
        return self


# --------------------------------------------------------------------- string maps


def _check_keys(lower: bool, what: str) -> Any:
    def check(value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if not qualified_name_ok(k.lower() if lower else k)]
        if bad:
            raise ValueError(f"{what} keys must be qualified names (example.com/name): {bad}")
        return value

    return AfterValidator(check)


def _keys_rule(lower: bool, what: str) -> dict[str, Any]:
    key = "k.lowerAscii()" if lower else "k"
    return {
        "x-kubernetes-validations": [
            cel(
                f"self.all(k, {_cel_qualified(key)})",
                f"{what} keys must be qualified names such as app or example.com/name",
            )
        ]
    }


def label_map(what: str) -> Any:
    """map[string]string of labels (ValidateLabels): qualified keys, label values."""
    return Annotated[
        dict[str, LabelValue],
        Field(max_length=64, json_schema_extra=_keys_rule(False, what)),
        _check_keys(False, what),
    ]


def annotation_map(what: str) -> Any:
    """map[string]string of annotations (ValidateAnnotations): keys qualified, any case prefix."""
    return Annotated[
        dict[str, Annotated[str, Field(max_length=65536)]],
        Field(max_length=64, json_schema_extra=_keys_rule(True, what)),
        _check_keys(True, what),
    ]


# ------------------------------------------------------------------------ resources

_STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def resource_name_error(name: str) -> str | None:
    """validateContainerResourceName, or None when the name is accepted."""
    if not qualified_name_ok(name):
        return "must be a qualified name"
    if "/" not in name:
        if name in _STANDARD_RESOURCES or name.startswith("hugepages-"):
            return None
        return "must be cpu, memory, ephemeral-storage, hugepages-<size> or example.com/<name>"
    if "kubernetes.io/" in name:
        return None
    if name.startswith("requests.") or not qualified_name_ok("requests." + name):
        return "doesn't follow extended resource name standard"
    return None


def is_extended_resource(name: str) -> bool:
    """IsExtendedResourceName: not native (no '/', or under kubernetes.io)."""
    return "/" in name and "kubernetes.io/" not in name


_CEL_RESOURCE_NAME = (
    "(k in ['cpu', 'memory', 'ephemeral-storage'] || "
    f"(k.startsWith('hugepages-') && k.matches(r'^{_QUALIFIED_NAME_PART}$')) || "
    f"(k.contains('/') && {_cel_qualified('k')} && (k.contains('kubernetes.io/') || "
    "(!k.startsWith('requests.') && k.indexOf('/') <= 244))))"
)
_CEL_EXTENDED = "(k.contains('/') && !k.contains('kubernetes.io/'))"


def _resource_map(what: str) -> Any:
    return Field(
        default=None,
        max_length=8,
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    f"self.all(k, {_CEL_RESOURCE_NAME})",
                    f"{what}: resource names must be cpu, memory, ephemeral-storage, "
                    "hugepages-<size> or an extended resource such as example.com/gpu",
                ),
                cel(
                    f"self.all(k, !{_CEL_EXTENDED} || !isQuantity(string(self[k])) || "
                    "quantity(string(self[k])).isInteger())",
                    f"{what}: extended resources (example.com/<name>) take whole numbers",
                ),
            ]
        },
        description=f"Resource {what}: quantities such as 500m, 1, 2Gi.",
    )


def _compare(a: str, b: str, op: str) -> str:
    return (
        f"(!isQuantity(string({a})) || !isQuantity(string({b})) || "
        f"quantity(string({a})).compareTo(quantity(string({b}))) {op} 0)"
    )


class ResourceRequirements(KubeModel):
    """CPU/memory requests and limits of each worker container."""  # validateResourceRequirements

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!has(self.requests) || !has(self.limits) || self.requests.all(k, "
                    "!(k in self.limits) || "
                    + _compare("self.requests[k]", "self.limits[k]", "<=")
                    + ")",
                    "each request must be less than or equal to its limit",
                    ".requests",
                ),
                cel(
                    "!has(self.requests) || self.requests.all(k, !" + _CEL_EXTENDED + " || "
                    "(has(self.limits) && k in self.limits && "
                    + _compare("self.requests[k]", "self.limits[k]", "==")
                    + "))",
                    "an extended resource (example.com/<name>) needs a limit equal to its request",
                    ".requests",
                ),
                cel(
                    "!((has(self.requests) && self.requests.exists(k, k.startsWith('hugepages-')))"
                    " || (has(self.limits) && self.limits.exists(k, k.startsWith('hugepages-'))))"
                    " || (has(self.requests) && ('cpu' in self.requests || 'memory' in "
                    "self.requests)) || (has(self.limits) && ('cpu' in self.limits || "
                    "'memory' in self.limits))",
                    "hugepages require a cpu or memory request or limit",
                ),
            ]
        }
    )

    limits: dict[str, Quantity] | None = _resource_map("limits")
    requests: dict[str, Quantity] | None = _resource_map("requests")

    @model_validator(mode="after")
    def _rules(self) -> ResourceRequirements:
        limits, requests = self.limits or {}, self.requests or {}
        for what, values in (("limits", limits), ("requests", requests)):
            for name, value in values.items():
                error = resource_name_error(name)
                if error:
                    raise ValueError(f"resources.{what}: {name!r} {error}")
                if is_extended_resource(name) and parse_quantity(value).denominator != 1:
                    raise ValueError(f"resources.{what}.{name} must be a whole number")
        for name, value in requests.items():
            if name in limits and parse_quantity(value) > parse_quantity(limits[name]):
                raise ValueError(f"resources.requests.{name} must be <= its limit {limits[name]}")
            if is_extended_resource(name) and (
                name not in limits or parse_quantity(value) != parse_quantity(limits[name])
            ):
                raise ValueError(f"resources.requests.{name} needs a limit equal to it")
        names = set(limits) | set(requests)
        if any(n.startswith("hugepages-") for n in names) and not names & {"cpu", "memory"}:
            raise ValueError("hugepages require a cpu or memory request or limit")
        return self
