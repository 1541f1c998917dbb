"""Who is on a run directory: the lock its trainer holds, and the launcher's job records,
beside the run directory (never inside: it holds only what a run writes; the names of both,
harness/store/paths.py):

    lock          locked (flock, exclusive) by the process training the run, for as long as it
                  trains; its text names the holder: host, pid, job id
    job record    written by harness/tables/launch.py when it submits the run: executor, job
                  id, host, log path, time; a local launcher writes one for each run it holds
                  back beyond --max_parallel too (`queued_record`), so that a second launch
                  does not submit it again; and one before it submits (`submitting_record`),
                  replaced by the job's once submitted, so that a launcher killed in between
                  leaves a record the next launch can check (`job_alive`) rather than none
    failure       written by a job whose run failed: the error and the log path; the launcher
                  does not submit the run again until it is removed (`--retry_failed`)

The lock is a kernel lock, not the file's existence: it goes when its process goes, however it
ends (a killed or preempted job leaves the file, unlocked), so a stale lock needs no cleaning.
Across nodes this needs a shared file system with coherent locks: NFS (the Linux client maps
flock to NLM / NFSv4 byte-range locks; a crashed node's lock is freed when its lease expires,
about 90 s), Lustre mounted with `-o flock`, GPFS / Spectrum Scale, BeeGFS with global locks.
A file system without locks fails loudly (one line naming it), never silently unlocked.
"""
import contextlib
import errno
import fcntl
import json
import os
import socket
import subprocess
import time
from pathlib import Path

from harness.core.errors import UserError
from harness.store import paths, readers
from harness.store.record import write_json

JOB_ID_VARIABLES = ("SLURM_JOB_ID", "SUBMITIT_LOCAL_JOB_ID")


# The lock a parent process holds for the process it starts (torchrun inside a job).
HELD_BY_PARENT = "FREETICKETS_TRAINING_LOCK_HELD"
_HELD: set[str] = set()  # the locks this process holds
QUEUED = "queued"  # the job id of a run a local launcher has not submitted yet
SUBMITTING = "submitting"  # the job id of a run whose submission has begun, not yet recorded
# The environment variable that carries a submission's token into the job's processes: how a
# job knows a `submitting_record` for its own, and a later launch finds a local job whose
# launcher died before it recorded the job id.
SUBMISSION = "FREETICKETS_SUBMISSION"


class Busy(UserError):
    """The run is being trained by another process; the message names it. A UserError: a
    second trainer is refused in one line, exit status 2."""


def holder() -> dict:
    job = next((os.environ[name] for name in JOB_ID_VARIABLES if name in os.environ), None)
    return {"host": socket.gethostname(), "pid": os.getpid(), "job_id": job,
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def describe(record: dict) -> str:
    job = f", job {record['job_id']}" if record.get("job_id") else ""
    return f"pid {record.get('pid')} on {record.get('host')}{job} since {record.get('since')}"


def _try_lock(fd: int, path: Path) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as error:
        if error.errno in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise UserError(f"the file system of {path} does not support file locks "
                            f"({error.strerror}); put --runs_dir on one that does (Lustre: "
                            f"mount with -o flock)") from error
        raise


@contextlib.contextmanager
def training_lock(run_dir: Path, join: bool = False):
    """Held while this process trains `run_dir`; Busy (naming the holder) when another process
    holds it. The lock file stays afterwards, unlocked. With `join` (run_experiment, the one
    place every run trains), a lock this process already holds (harness.tables takes it around
    run_experiment) or its parent holds for it (`held_for_children`: torchrun's processes
    inside a launcher's job) is joined: nothing more is held, nothing refused."""
    path = paths.lock(run_dir)
    key = str(path.resolve())
    if join and (key in _HELD or os.environ.get(HELD_BY_PARENT) == key):
        yield None
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        # A few tries: `running()` (the plan, the launcher) takes the lock for an instant.
        if not any(_try_lock(fd, path) or time.sleep(0.2) for _ in range(10)):
            raise Busy(f"{run_dir} is being trained by {describe(readers.lock_holder(path))}; it is "
                       f"left to that process")
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(holder()).encode())
        os.fsync(fd)
        _HELD.add(key)
        try:
            yield fd
        finally:
            _HELD.discard(key)
    finally:
        os.close(fd)  # releases the lock


def held_for_children(run_dir: Path) -> dict[str, str]:
    """The environment that tells a child process this one holds `run_dir`'s lock for it."""
    return {HELD_BY_PARENT: str(paths.lock(run_dir).resolve())}


def running(run_dir: Path) -> dict | None:
    """The holder of `run_dir`'s lock while one holds it, else None."""
    path = paths.lock(run_dir)
    if not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDWR)  # NFS's emulated flock wants a writable descriptor
    except OSError as error:
        if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
        fd = os.open(path, os.O_RDONLY)  # a colleague's store, readable only
    try:
        if _try_lock(fd, path):
            return None
        return readers.lock_holder(path)
    finally:
        os.close(fd)


def record_failure(run_dir: Path, error: str, log: str | None) -> None:
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    write_json(paths.failure_record(run_dir), {"error": error, "log": log, **holder()})


def queued_record(log_dir: Path) -> dict:
    """The job record of a run a local launcher (this process) holds back until one of its
    --max_parallel slots frees: another launch sees it queued for as long as this lives."""
    return {"executor": "local", "job_id": QUEUED, "launcher_pid": os.getpid(),
            "host": socket.gethostname(), "log": str(log_dir),
            "submitted": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def submitting_record(executor: str, log_dir: Path, token: str, job_name: str | None = None
                      ) -> dict:
    """The job record of a run this launcher is about to submit, its job's processes carrying
    `token` in their environment (SUBMISSION); a SLURM job named `job_name`."""
    return {"executor": executor, "job_id": SUBMITTING, "submission": token,
            "job_name": job_name, "launcher_pid": os.getpid(), "host": socket.gethostname(),
            "log": str(log_dir), "submitted": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def describe_job(record: dict) -> str:
    if record.get("job_id") == QUEUED:
        return (f"waiting in the local launcher pid {record.get('launcher_pid')} on "
                f"{record.get('host')} for a free slot (logs in {record.get('log')})")
    if record.get("job_id") == SUBMITTING:
        return (f"{record.get('executor')} job submitted by the launcher pid "
                f"{record.get('launcher_pid')} on {record.get('host')}, which ended before "
                f"recording its id (logs in {record.get('log')})")
    return f"{record.get('executor')} job {record.get('job_id')} (log {record.get('log')})"


def job_alive(record: dict) -> bool:
    """Whether a submitted job may still run: a local job's controller process (or, while it
    waits for a slot, its launcher) is alive (known on its own host only), a SLURM job is
    still in squeue. A submission whose launcher ended before recording the job id
    (`submitting_record`) may still run while a process carrying its token lives (local) or a
    job of its name is in squeue (SLURM); none: it was never submitted, or its job has ended.
    When this cannot be told (another host, no squeue or /proc here), it is taken as alive:
    a run is never submitted twice."""
    job_id = str(record.get("job_id"))
    if record.get("host") == socket.gethostname() and job_id in (QUEUED, SUBMITTING):
        if process_alive(int(record["launcher_pid"])):
            return True
        if job_id == QUEUED:
            return False
    if record.get("executor") == "local":
        if record.get("host") != socket.gethostname():
            return True
        if job_id == SUBMITTING:
            return carrier_alive(str(record.get("submission")))
        return process_alive(int(job_id))
    if job_id == SUBMITTING:
        return in_squeue(["-n", str(record.get("job_name"))])
    return in_squeue(["-j", job_id])


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def carrier_alive(token: str) -> bool:
    """Whether a process of this host carries the submission `token` (SUBMISSION) in its
    environment: the controller or task of a local job submitted with it. Without /proc
    (not Linux), taken as alive."""
    processes = Path("/proc")
    if not processes.is_dir():
        return True
    carried = f"{SUBMISSION}={token}".encode()
    for environ in processes.glob("[0-9]*/environ"):
        try:
            if carried in environ.read_bytes().split(b"\0"):
                return True
        except OSError:  # ended meanwhile, or another user's
            continue
    return False


def in_squeue(selection: list[str]) -> bool:
    try:
        done = subprocess.run(["squeue", "-h", *selection, "-o", "%T"], capture_output=True,
                              text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return True
    return done.returncode == 0 and bool(done.stdout.strip())


def own_job(record: dict) -> bool:
    """Whether `record` is of the job this process runs in: its job id, or the token of the
    submission that started it (a job may start before its launcher records the id)."""
    token = os.environ.get(SUBMISSION)
    return (str(record.get("job_id")) == str(holder()["job_id"])
            or (token is not None and record.get("submission") == token))


def waiting_job(run_dir: Path) -> str | None:
    """Why `run_dir` must not be trained here now: a job (not this one) that the launcher
    submitted for it is still queued (or its record is damaged: what to do); None otherwise."""
    try:
        record = readers.job(run_dir)
    except readers.DamagedRecord as damaged:
        return str(damaged)
    if (record is None or own_job(record) or running(run_dir) is not None
            or not job_alive(record)):
        return None
    return f"queued: {describe_job(record)}; remove {paths.job_record(run_dir)} if that is gone"
