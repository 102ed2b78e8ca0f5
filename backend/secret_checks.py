"""With DEBUG off the settings refuse secrets that anyone could know or guess (backend/settings.py calls this).

A known secret key makes sessions, CSRF tokens and participants' image URLs forgeable; a default database password
hands the data to whoever reaches the database port. The limits follow Django's own deploy check for the key (at
least 50 characters, at least 5 different ones) and ask 16 characters of the database password.
"""
from django.core.exceptions import ImproperlyConfigured

SECRET_KEY_MIN_LENGTH = 50
DATABASE_PASSWORD_MIN_LENGTH = 16
# Values from examples, docs and earlier versions of .env.example, and the words placeholders are made of.
PLACEHOLDERS = {"iri", "postgres", "password", "secret", "admin", "root", "build", "change-me", "changeme"}
PLACEHOLDER_WORDS = ("change-me", "changeme", "change_me", "insecure", "placeholder")
MAKE_ONE = 'python -c "import secrets; print(secrets.token_urlsafe(50))"'
HOW = (
    f"Make one with {MAKE_ONE}, or run `make env` to write a .env from .env.example with a new secret key and "
    "database password (it never overwrites an existing .env)."
)


def secret_weakness(value: str, *, min_length: int) -> str | None:
    """Why `value` is no secret, in a few words, or None when it is long and varied and no placeholder."""
    if not value:
        return "is empty"
    lowered = value.lower()
    if lowered in PLACEHOLDERS or any(word in lowered for word in PLACEHOLDER_WORDS):
        return "is a placeholder"
    if len(value) < min_length:
        return f"has {len(value)} characters, fewer than {min_length}"
    if len(set(value)) < 5:
        return "has fewer than 5 different characters"
    return None


def secrets_refuse_weak(*, secret_key: str, database_password: str | None) -> None:
    """Raise ImproperlyConfigured, saying how to make a good one, when the key or the database password is weak.

    A database URL without a password (SQLite, or PostgreSQL through a local socket, trust or peer authentication,
    or PGPASSWORD) is left alone: there is no password in it to guess.
    """
    why = secret_weakness(secret_key, min_length=SECRET_KEY_MIN_LENGTH)
    if why:
        raise ImproperlyConfigured(
            f"DJANGO_SECRET_KEY {why}: with DJANGO_DEBUG=false it must be a random string of at least "
            f"{SECRET_KEY_MIN_LENGTH} characters. {HOW}"
        )
    why = secret_weakness(database_password, min_length=DATABASE_PASSWORD_MIN_LENGTH) if database_password else None
    if why:
        raise ImproperlyConfigured(
            f"The database password in DATABASE_URL {why}: with DJANGO_DEBUG=false it must be a random string of at "
            f"least {DATABASE_PASSWORD_MIN_LENGTH} characters (letters, digits, - and _ fit in a URL as they are). "
            f"{HOW} In the compose stack it is POSTGRES_PASSWORD; a database that already exists keeps its old "
            "password until it is changed there too (docs/compose.md says how)."
        )
