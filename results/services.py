from .alignment import alignment_estimate
from .selectors import answer_arrays
from surveys.models import Survey

NO_ANSWERS = "No answers yet."


def alignment_report(*, survey: Survey, n_boot: int = 1000, seed: int = 0) -> dict:
    """Alignment per IRI set of the survey: share of answers that chose the target, n and a 95 % CI."""
    arrays = answer_arrays(survey=survey)
    conditions = []
    for job in survey.iri_jobs.order_by("id"):
        mask = arrays["job"] == job.pk
        estimate = alignment_estimate(arrays["chose_target"][mask], arrays["participant"][mask], n_boot=n_boot, seed=seed)
        conditions.append(
            {
                "iri_set": job.pk,
                "name": str(job),
                "backbone": job.backbone,
                "layer": job.layer,
                "recipe": job.recipe,
                "seed_kind": job.seed_kind,
                **estimate.as_dict(),
                "note": "" if estimate.n_answers else NO_ANSWERS,
            }
        )
    return {
        "survey": survey.slug,
        "task_type": survey.task_type,
        "foil_rule": survey.foil_rule,
        "chance": 0.5,
        "ci": "95 % percentile bootstrap over participants",
        "n_answers": int(arrays["job"].size),
        "conditions": conditions,
    }
