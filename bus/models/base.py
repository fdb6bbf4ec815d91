"""The base of every alert type: a header, a typed body, and the Avro dict form."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar, Self

from bus.models._common import Record, validate_avro
from bus.models.header import AlertHeader


class Alert(Record):
    """One alert: the common ``header`` followed by the fields of its type.

    Subclasses name their alert type and Avro record; their fields mirror
    ``schemas/<alert_type>/v<N>.avsc`` one for one, with the same names, so that JSON written
    with Avro field names validates directly::

        alert = TraffickingArrest.model_validate_json(Path("alert.json").read_text())
        record = alert.to_avro()                       # for fastavro's writer
        assert TraffickingArrest.from_avro(record) == alert
    """

    #: Kebab-case alert type, as in topic names and ``schemas/<alert_type>/``.
    alert_type: ClassVar[str]
    #: Full name of the Avro record, e.g. ``eu.balkanalertbus.TraffickingArrest``.
    avro_name: ClassVar[str]

    header: AlertHeader

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> Self:
        """Build the alert from a dict as fastavro's reader returns it.

        Raises ``bus.errors.ValidationError`` naming the first field that does not fit.
        """
        hint = f"; check that the writer used schemas/{cls.alert_type}/"
        return validate_avro(cls, record, cls.avro_name, hint)

    @property
    def alert_id(self) -> uuid.UUID:
        return self.header.alert_id

    @property
    def origin(self) -> str:
        return self.header.origin

    @property
    def record_key(self) -> bytes:
        """Kafka record key: the case reference if any; else, for an UPDATE or CANCEL, the first
        alert it references; else the alert id. A case keeps its order, and a follow-up lands on
        the partition (and so the fan-out shard) of the alert it follows up."""
        header = self.header
        if header.case_ref:
            return header.case_ref.encode("utf-8")
        if header.references and header.msg_type.value != "ALERT":
            return str(header.references[0]).encode("utf-8")
        return str(header.alert_id).encode("utf-8")
