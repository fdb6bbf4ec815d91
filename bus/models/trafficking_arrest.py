"""``trafficking-arrest``: traffickers or smugglers arrested, with their route and victims."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field

from bus.models._common import INT32_RANGE, CountryCode, Int32, UtcDatetime
from bus.models.base import Alert
from bus.models.person import PersonRef


class TraffickingArrest(Alert):
    """An arrest of suspected traffickers, e.g. by Vlora police on the Greece-Albania route."""

    alert_type: ClassVar[str] = "trafficking-arrest"
    avro_name: ClassVar[str] = "eu.balkanalertbus.TraffickingArrest"

    arrested_at: UtcDatetime
    place: str
    place_country: CountryCode
    arresting_authority: str
    suspects: list[PersonRef] = Field(default_factory=list)
    victim_count: Int32 = Field(ge=0)
    victim_nationalities: list[CountryCode] = Field(default_factory=list)
    route: list[CountryCode] = Field(default_factory=list)
    price_per_person_eur: float | None = Field(default=None, ge=0)
    earlier_occasions: Annotated[int, Field(ge=0), INT32_RANGE] | None = None
    summary: str | None = None
