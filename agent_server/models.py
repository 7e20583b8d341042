"""Every ORM mapping of the product, imported so ``Base.metadata`` is complete."""

from agent_server import mail as mail_models  # noqa: F401  (the mail outbox table)
from agent_server.accounts import models as accounts_models
from agent_server.booking import models as booking_models
from agent_server.dashboard import models as dashboard_models  # noqa: F401
from agent_server.events import models as events_models  # noqa: F401
from agent_server.kernel.store.base import Base
from agent_server.oauth import models as oauth_models  # noqa: F401
from billing import models as billing_models  # noqa: F401
from wallets import models as wallets_models  # noqa: F401
from wallets import withdrawal_models  # noqa: F401

metadata = Base.metadata

__all__ = ["Base", "accounts_models", "booking_models", "metadata"]
