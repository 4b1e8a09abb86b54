"""The database boundary: SQLAlchemy engines used only from thread pools."""

from voipgw.db.database import Database
from voipgw.db.errors import DatabaseUnavailable

__all__ = ["Database", "DatabaseUnavailable"]
