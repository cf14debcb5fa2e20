"""The one error tree of the firmware.

Adapters wrap foreign exceptions (``raise CameraError(...) from e``) so that only
these types escape the package. Each error carries a human sentence; where a fix
is known it is part of the message.
"""

from __future__ import annotations


class EdgeError(Exception):
    """Base of every error the firmware raises on purpose."""


# --- configuration -----------------------------------------------------------------


class ConfigError(EdgeError):
    """The configuration is invalid; ``key`` names the offending dotted key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config key '{key}': {message}")
        self.key = key


# --- models and inference ----------------------------------------------------------


class ModelError(EdgeError):
    """A model file is missing, corrupt or does not match the manifest."""


class ModelMissingError(ModelError):
    pass


class ModelHashError(ModelError):
    pass


class InferenceError(EdgeError):
    """The interpreter failed to load or run a model."""


class BackendError(InferenceError):
    """No usable inference backend (runtime or delegate)."""


class ImageError(EdgeError):
    """An input image cannot be read or decoded."""


class EnrolmentError(EdgeError):
    """An enrolment image was rejected (no face, several faces, low quality)."""


# --- frame sources -----------------------------------------------------------------


class CameraError(EdgeError):
    """A frame source cannot be opened or has failed for good."""


class StackError(EdgeError):
    """The numpy or OpenCV imported is not the device lock's (e.g. a second numpy in the venv)."""


class CameraStackError(CameraError, StackError):
    """picamera2 cannot import: the numpy it finds is not the one apt built it against."""


# --- signed documents: envelope, trust, bundle, order ------------------------------


class SignedDocumentError(EdgeError):
    """Base for everything refused by the verifier."""


class MalformedError(SignedDocumentError):
    """Bytes that do not parse as the expected structure."""


class PayloadTypeError(SignedDocumentError):
    """The envelope's payload type is not the one expected here."""


class OversizeError(SignedDocumentError):
    """A header or payload exceeds its size cap."""


class SignatureError(SignedDocumentError):
    """A signature does not verify over the signed bytes."""


class UnknownKeyError(SignedDocumentError):
    """A signature names a key id that the trust file does not hold."""


class UntrustedKeyError(SignedDocumentError):
    """A key is known but not trusted for this role."""


class ThresholdError(SignedDocumentError):
    """Fewer distinct trusted signatures than the role's threshold."""


class DuplicateSignatureError(ThresholdError):
    """The same key id was counted more than once towards a threshold."""


class RollbackError(SignedDocumentError):
    """Version lower than the last accepted one."""


class ReplayError(SignedDocumentError):
    """Version equal to the last accepted one with different content."""


class ExpiredError(SignedDocumentError):
    pass


class NotYetValidError(SignedDocumentError):
    pass


class ClockUntrustedError(SignedDocumentError):
    """The clock reads earlier than the last accepted issue time."""


class WrongDeviceError(SignedDocumentError):
    pass


class WrongFleetError(SignedDocumentError):
    pass


class NoTargetError(SignedDocumentError):
    """The target list is empty."""


class WrongModelError(SignedDocumentError):
    """The bundle was built for another embedding model."""


class OperatingPointError(EdgeError):
    """The model card predicts that a deployment cannot meet its order's terms."""


class ThresholdFloorError(SignedDocumentError):
    """A match threshold below the model card's floor."""


class EntryError(SignedDocumentError):
    """An entry misses a required field (e.g. ``authority_ref``)."""


class CategoryError(SignedDocumentError):
    """An entry's category is not in the fixed list."""


class DecryptError(SignedDocumentError):
    """Templates cannot be decrypted with this device's key."""


class TrustError(SignedDocumentError):
    """A root-of-trust file is invalid or its rotation is not signed as required."""


class OrderError(SignedDocumentError):
    """A deployment order is invalid or outside its window."""


# --- state, delivery, audit --------------------------------------------------------


class StateError(EdgeError):
    """Persisted device state is unreadable or inconsistent."""


class OutboxError(EdgeError):
    pass


class OutboxFullError(OutboxError):
    pass


class BrokerError(EdgeError):
    """The MQTT broker cannot be reached or refused us."""


class AuditError(EdgeError):
    """The audit log is broken; ``index`` is the first bad record."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


class AuditSpaceError(AuditError):
    """The audit log's filesystem is below its space reserve; nothing was written."""


class AuditGuardError(AuditError):
    """A value offered to the audit log looks like biometric data (template, crop, image)
    and was refused; ``path`` names where in the record's data it was found."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(f"audit data at '{path}' refused: {message}")
        self.path = path


class ReviewError(EdgeError):
    """An adjudication message from the centre (``edge.review/1``) is malformed."""
