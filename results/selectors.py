"""The one place where answers leave the ORM and become arrays for results.alignment."""
import numpy as np
from django.db.models import F, Q

from surveys.models import Response, Survey


def answer_arrays(*, survey: Survey) -> dict[str, np.ndarray]:
    """One entry per answer: its IRI set (job id), participant id, and whether it chose the target."""
    rows = (
        Response.objects.filter(trial__survey=survey)
        .annotate(chose_target=Q(choice=F("trial__target_option")))
        .values_list("trial__iri__job_id", "participant_id", "chose_target")
    )
    data = np.array(list(rows), dtype=np.int64).reshape(-1, 3)
    return {"job": data[:, 0], "participant": data[:, 1], "chose_target": data[:, 2].astype(bool)}
