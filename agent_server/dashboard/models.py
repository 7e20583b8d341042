"""What the dashboard stores: one-time sign-in codes and signed-in sessions.

Both hold only peppered hashes (``agent_server.accounts.keys.hash_secret``): a stolen copy of
the database opens no session and reveals no code.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from agent_server.kernel.store.base import Base, BigIntPK, UTCDateTime


class SignInCode(Base):
    """A 6-digit code mailed to a person who asked to sign in.

    At most one code per email is live: asking again marks the previous one ``superseded_at``.
    ``attempts`` counts wrong tries; at the limit the code is locked.
    """

    __tablename__ = "dashboard_sign_in_codes"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(255), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    superseded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Set for a sign-up: the name of the specialist profile the right code creates.
    signup_name: Mapped[str | None] = mapped_column(String(255))


class DashboardSession(Base):
    """A signed-in browser: the hash of its cookie's token, whose it is, and until when."""

    __tablename__ = "dashboard_sessions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    email: Mapped[str] = mapped_column(String(255), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
