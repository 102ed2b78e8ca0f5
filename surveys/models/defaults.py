"""What a new survey starts with when the researcher gives nothing: its consent and instructions by task type, the
bounds of a timed screen, and the generated tokens, codes and salt."""
import secrets

from django.core.validators import MaxValueValidator, MinValueValidator

DEFAULT_CONSENT = """**Consent.** This study is run by researchers who want to learn how people judge images.
You will look at images and choose between two of them. It takes a few minutes. Your answers are stored
without your name. You may stop at any time by closing the page."""

DEFAULT_INSTRUCTIONS = """On each screen you see a **query image** on top and **two images** below it.
Choose the one of the two that is **closer to the query image**: click or tap it, or press **F** for the
left image and **J** for the right one. Go with your first impression."""

DEFAULT_CLUSTER_INSTRUCTIONS = """On each screen you see **three reference images** and **six images** below them.
For each of the six, choose the reference image it is **closest to**. Go with your first impression."""

DEFAULT_CLUSTER_CONSENT = DEFAULT_CONSENT.replace(
    "choose between two of them", "match each of them to one of three reference images"
)

DEFAULT_CLASSIFY_CONSENT = DEFAULT_CONSENT.replace(
    "look at images and choose between two of them",
    "look at images, some shown only for a moment, and choose the category each one shows",
)

DEFAULT_CLASSIFY_INSTRUCTIONS = """Look at the **+** in the middle of the screen. An image appears there, often only
for a moment, and then a pattern of noise. Choose the **category** the image shows: click or tap its button, or
move between the buttons with the arrow keys and press **Enter**. If you are not sure, make your best guess."""

TASK_DEFAULT_HELP = (
    "Left as a default text, a new survey gets its own task's default (2AFC, clustering, classification)."
)
# The consent and instructions a survey gets when the researcher writes none, by task type.
DEFAULT_TEXTS = {
    "2afc": {"consent_md": DEFAULT_CONSENT, "instructions_md": DEFAULT_INSTRUCTIONS},
    "cluster": {"consent_md": DEFAULT_CLUSTER_CONSENT, "instructions_md": DEFAULT_CLUSTER_INSTRUCTIONS},
    "classification": {"consent_md": DEFAULT_CLASSIFY_CONSENT, "instructions_md": DEFAULT_CLASSIFY_INSTRUCTIONS},
}


MAX_DURATION_MS = 10_000  # a timed screen lasts at most 10 s
DURATION_RANGE = [MinValueValidator(1), MaxValueValidator(MAX_DURATION_MS)]


def _token() -> str:
    return secrets.token_urlsafe(24)


def _completion_code() -> str:
    return secrets.token_hex(4).upper()


def _pseudonym_salt() -> str:
    return secrets.token_hex(16)

