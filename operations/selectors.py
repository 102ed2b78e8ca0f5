"""Operation runs as a user may see them: those of the teams where they hold a role (teams.selectors)."""
from django.contrib.contenttypes.models import ContentType
from django.db.models import QuerySet

from teams.selectors import team_object_get, team_scoped

from .models import OperationRun


def operation_run_list(*, user, subject=None, kind: str | None = None) -> QuerySet[OperationRun]:
    """The runs of the user's teams, newest first; only those on `subject` and of `kind` when given."""
    runs = team_scoped(user=user, queryset=OperationRun.objects.all())
    return _narrowed(runs, subject=subject, kind=kind)


def operation_run_get(*, user, run_id: int) -> OperationRun:
    """One run of the user's teams (404 when it is another team's or does not exist)."""
    return team_object_get(user=user, queryset=OperationRun.objects.all(), pk=run_id)


def operation_run_list_of_subject(*, subject, kind: str | None = None) -> QuerySet[OperationRun]:
    """The runs on `subject`, newest first, for a caller that loaded the subject through the scoped selectors
    already (an admin page's object, a service): a run belongs to its subject's team."""
    return _narrowed(OperationRun.objects.all(), subject=subject, kind=kind)


def _narrowed(runs: QuerySet[OperationRun], *, subject, kind: str | None) -> QuerySet[OperationRun]:
    if subject is not None:
        runs = runs.filter(subject_type=ContentType.objects.get_for_model(subject), subject_id=subject.pk)
    if kind is not None:
        runs = runs.filter(kind=kind)
    return runs.order_by("-id")
