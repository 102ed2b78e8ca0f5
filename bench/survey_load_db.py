"""The database side of bench/survey_load.py: its own database, a synthetic published survey with its participants
(setup_database), psql and shell helpers, the answers stored and duplicated after a phase, and pgbench's insert
floor on the same table shape."""
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

DB_NAME = os.environ.get("BENCH_DB", "iri_bench")
DB_URL = f"postgres://postgres@127.0.0.1:5432/{DB_NAME}"
PSQL = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-q", "-v", "ON_ERROR_STOP=1"]


def sh(args, **kw):
    run = subprocess.run(args, capture_output=True, text=True, **kw)
    if run.returncode != 0:
        raise SystemExit(f"survey_load: {Path(args[0]).name} failed ({run.returncode}): {run.stderr.strip()[-2000:]}")
    return run.stdout


def sql(query: str) -> str:
    # Through stdin: the counting queries carry thousands of keys, too long for a command line.
    return sh(PSQL + ["-d", DB_NAME, "-At", "-f", "-"], input=query).strip()


def setup_database(participants: int, trials: int) -> list[tuple[str, str]]:
    """A fresh database with a synthetic live survey: `trials` 2AFC trials (no files are served) and
    `participants` consented sessions, each assigned every trial and holding one slot. Returns every
    (token, trial id) pair, shuffled."""
    sh(PSQL + ["-d", "postgres", "-c", f"DROP DATABASE IF EXISTS {DB_NAME}"])
    sh(PSQL + ["-d", "postgres", "-c", f"CREATE DATABASE {DB_NAME}"])
    env = {**os.environ, "DATABASE_URL": DB_URL}
    sh([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env)
    sql(f"""
    INSERT INTO iri_worker_storedimage (sha256, file, width, height, created_at)
      SELECT md5(g::text) || md5((g+7)::text), 'img/x.png', 32, 32, now() FROM generate_series(1, 2) g;
    INSERT INTO teams_team (name, created_at) VALUES ('bench', now());
    INSERT INTO surveys_survey (team_id, pseudonym_salt, data_version, slug, title, task_type, foil_rule, cluster_variant, status, consent_md, instructions_md,
      ratings_per_list, catch_trials, practice_trials, practice_pass_fraction, catch_min_accuracy, rt_floor_ms,
      rt_floor_max_fraction, refill_excluded, time_limit_minutes, resume_policy, completion_code, code_failed_attention,
      code_timed_out, code_technical, pilot_key, rng_seed, one_side_min_trials, size_policy, iri_require_label_match,
      build_report, adaptive_state, precision_every, fixation_ms, image_ms, mask_ms, categories, screening_trials,
      screening_pass_fraction, code_screened_out, desktop_only, exclude_mistimed, created_at)
      VALUES ((SELECT min(id) FROM teams_team), 'salt', 0, 'bench', 'bench', '2afc', 'seed', 'random', 'LIVE', '', '', {participants}, 0, 0, 0.5, 0.75, 200, 0.25, true,
      600, 'resume', 'C', 'F', 'T', 'X', 'k', 0, 20, 'resize', false, '{{}}', '{{}}', 1, 300, 300, 300, '[]', 0, 0.75, 'S',
      false, false, now());
    INSERT INTO surveys_triallist (survey_id, index) SELECT id, 0 FROM surveys_survey;
    INSERT INTO surveys_trial (survey_id, trial_list_id, public_id, kind, task_type, screen, query_id, option_0_id,
      option_1_id, n_options, target_option, foil_kind)
      SELECT s.id, l.id, 't' || g, 'main', '2afc', '', i.id, i.id, i.id, 2, g % 2, 'seed'
      FROM surveys_survey s, surveys_triallist l, (SELECT min(id) id FROM iri_worker_storedimage) i, generate_series(1, {trials}) g;
    INSERT INTO surveys_participant (survey_id, trial_list_id, token, prolific_pid, study_id, session_id, worker_id,
      assignment_id, hit_id, turk_submit_to, is_pilot, is_bot, is_rehearsal, status, stage, consented_at, restarts,
      client_info, excluded, exclusion_reasons, created_at)
      SELECT s.id, l.id, 'p' || g, '', '', '', '', '', '', '', false, true, false, 'active', 'consented', now(), 0,
      '{{}}', false, '[]', now() FROM surveys_survey s, surveys_triallist l, generate_series(1, {participants}) g;
    INSERT INTO surveys_assignment (participant_id, trial_id, position, option_order)
      SELECT p.id, t.id, row_number() OVER (PARTITION BY p.id ORDER BY t.id), CASE WHEN (p.id + t.id) % 2 = 0 THEN '01' ELSE '10' END
      FROM surveys_participant p, surveys_trial t;
    INSERT INTO surveys_slot (survey_id, trial_list_id, is_pilot, ordinal, rank, participant_id, reserved_until)
      SELECT p.survey_id, p.trial_list_id, false, row_number() OVER (ORDER BY p.id) - 1, row_number() OVER (ORDER BY p.id) - 1,
      p.id, now() + interval '10 hours' FROM surveys_participant p;
    VACUUM ANALYZE;
    """)
    pairs = [(f"p{p}", f"t{t}") for t in range(1, trials + 1) for p in range(1, participants + 1)]
    random.Random(0).shuffle(pairs)
    return pairs


def stored_count(keys: list[str]) -> int:
    if not keys:
        return 0
    return int(sql("SELECT count(*) FROM surveys_response WHERE idempotency_key = ANY(ARRAY[%s]::uuid[])" % ",".join(f"'{k}'" for k in keys)))


def duplicated_count() -> int:
    return int(sql("SELECT count(*) FROM (SELECT 1 FROM surveys_response GROUP BY participant_id, trial_id HAVING count(*) > 1) d"))


def pgbench(seconds: int, clients: int) -> float:
    sql("""DROP TABLE IF EXISTS bench_response; CREATE TABLE bench_response (id bigserial PRIMARY KEY,
        participant_id bigint NOT NULL, trial_id bigint NOT NULL, choice smallint NOT NULL, rt_ms double precision NOT NULL,
        idempotency_key uuid NOT NULL UNIQUE, created_at timestamptz NOT NULL, UNIQUE (participant_id, trial_id));
        CREATE INDEX ON bench_response (trial_id);""")
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write("\\set p random(1, 2000000000)\n\\set t random(1, 2000000000)\n"
                "INSERT INTO bench_response (participant_id, trial_id, choice, rt_ms, idempotency_key, created_at) "
                "VALUES (:p, :t, 1, 612.5, gen_random_uuid(), now()) ON CONFLICT DO NOTHING;\n")
    out = sh(["pgbench", "-h", "127.0.0.1", "-U", "postgres", "-n", "-c", str(clients), "-j", "2", "-T", str(seconds), "-f", f.name, DB_NAME])
    os.unlink(f.name)
    tps = [line for line in out.splitlines() if line.startswith("tps")][0]
    return round(float(tps.split("=")[1].split()[0]), 1)
