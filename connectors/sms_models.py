"""What the SMS channel keeps: short conversations, and the gateway's message ids.

On core's ``Base`` (migration ``0003``). A conversation holds what a resident
has said so far while the reply asks for what is missing; it ends when the
ticket is created, when the resident cancels, or when it expires. Phone
numbers are personal data: rows are deleted after the plugin's
``retention_days``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.db.models import Base
from core.db.types import utcnow


class SmsConversation(Base):
    """One resident's report in the making, over one or more SMS."""

    __tablename__ = "sms_conversations"
    __table_args__ = (Index("ix_sms_conversations_phone", "commune", "phone", "status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    commune: Mapped[str] = mapped_column(String(64))
    phone: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16), default="open")  # open|done|cancelled
    language: Mapped[str] = mapped_column(String(8), default="fr")
    # Every text the resident sent that describes the problem.
    description: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str | None] = mapped_column(String(64))
    address: Mapped[str | None] = mapped_column(String(300))
    answers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # What the last reply asked for: "category", "address" or "answer:<code>".
    awaiting: Mapped[str | None] = mapped_column(String(80))
    asked_times: Mapped[int] = mapped_column(Integer, default=0)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    expires_at: Mapped[datetime] = mapped_column(default=utcnow)


class SmsInboundMessage(Base):
    """A gateway's message id already handled: a redelivered webhook does nothing."""

    __tablename__ = "sms_inbound_messages"
    __table_args__ = (UniqueConstraint("commune", "message_id", name="uq_sms_inbound_message"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    commune: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(200))
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("sms_conversations.id"))
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
