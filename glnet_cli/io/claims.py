"""Claims: many batch runs over one archive, each scene done by exactly one of them.

Before a run segments a scene it creates a claim file beside the mask
(``.<name>.glnet-claim``) with ``O_CREAT | O_EXCL``, which is atomic on local
file systems and on NFS alike; advisory locks (``flock``) are not relied on,
since NFS may not share them between machines. The claim records who holds
it: host, pid, the process's start time (so that a reused pid is not mistaken
for the run), boot and pid namespace, and when it was made.

A run that finds a claim asks whether its holder is alive:

* on the same host (same name, boot and pid namespace) the holder is alive
  while its pid exists, is not a zombie, and started when the claim says;
* elsewhere it cannot look, so the holder refreshes the claim's mtime every
  :data:`HEARTBEAT_S` seconds while it works, and a claim not refreshed for
  :data:`STALE_AFTER_S` seconds (a killed run, a lost node) is stale.

A dead holder's claim is taken over: renamed to a unique name first (one of
several runs that saw it stale wins the rename), checked to be the claim that
was judged stale, then replaced by a fresh one with ``O_EXCL``. At worst a
race ends with a scene done twice; publishing never replaces a mask
(:func:`glnet_cli.io.paths.publish`), so nothing is lost either way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Iterator, Optional

logger = logging.getLogger(__name__)

#: Marks glnet's claim files: ``.<mask name>.glnet-claim`` beside the mask.
CLAIM_MARK = ".glnet-claim"
#: How often a holder refreshes its claim's mtime.
HEARTBEAT_S = 30.0
#: A claim from another host that was not refreshed for this long is stale (20 heartbeats:
#: generous for a stalled NFS server or clocks that disagree by a few minutes).
STALE_AFTER_S = 600.0


def _read(path: str) -> Optional[str]:
    try:
        with open(path, encoding="ascii") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def process_start(pid: int) -> Optional[str]:
    """When ``pid`` started (clock ticks since boot, from ``/proc``); None where unknown."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the command name may hold spaces
    return fields[19] if len(fields) > 19 else None


def _zombie(pid: int) -> bool:
    stat = _read(f"/proc/{pid}/stat") or ""
    return stat[stat.rfind(")") + 2:].startswith("Z")


def _pid_namespace() -> Optional[str]:
    with contextlib.suppress(OSError):
        return os.readlink("/proc/self/ns/pid")
    return None


@dataclass(frozen=True)
class Holder:
    """Who holds a claim: enough to tell, later and from anywhere, whether it still runs."""

    host: str
    pid: int
    started: Optional[str]
    boot_id: Optional[str] = None
    pid_ns: Optional[str] = None
    claimed_at: float = 0.0

    @classmethod
    def me(cls) -> Holder:
        """This process, now."""
        pid = os.getpid()
        return cls(socket.gethostname(), pid, process_start(pid),
                   _read("/proc/sys/kernel/random/boot_id"), _pid_namespace(), time.time())

    def is_local(self) -> bool:
        """Whether the holder's pid can be looked up here (same host, boot and pid namespace)."""
        here = Holder.me()
        return (self.host == here.host and self.boot_id == here.boot_id
                and self.pid_ns == here.pid_ns)

    def is_running(self) -> bool:
        """For a local holder: whether its process still runs (a reused pid does not count)."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass  # someone else's process: it exists
        if _zombie(self.pid):
            return False
        now = process_start(self.pid)
        return self.started is None or now is None or now == self.started


def read_holder(path: str) -> Optional[Holder]:
    """The holder a claim file names; None for a file being written or not a claim."""
    return _parse(_read(path))


def _parse(text: Optional[str]) -> Optional[Holder]:
    try:
        holder = Holder(**json.loads(text)) if text else None
    except (TypeError, ValueError):
        return None
    return holder if holder is None or isinstance(holder.pid, int) else None


def is_stale(path: str, holder: Optional[Holder], *,
             stale_after: float = STALE_AFTER_S) -> bool:
    """Whether the claim at ``path`` was left by a run that is gone (see the module notes)."""
    if holder is not None and holder.is_local():
        return not holder.is_running()
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return False  # released meanwhile: not ours to judge
    return age > stale_after


def claim_path(target: str) -> str:
    """``folder/.<name>.glnet-claim`` for ``folder/<name>``."""
    folder, name = os.path.split(os.path.abspath(target))
    return os.path.join(folder, f".{name}{CLAIM_MARK}")


class Claim:
    """A held claim on one target; use it as a context manager to keep it fresh and release it.

    Inside ``with claim:`` a small thread refreshes the claim's mtime every
    ``heartbeat`` seconds; leaving the block (success, failure or Ctrl-C)
    removes the claim, unless another run has taken it over meanwhile.
    """

    def __init__(self, path: str, holder: Holder, inode: tuple[int, int],
                 heartbeat: float = HEARTBEAT_S) -> None:
        self.path, self.holder, self.heartbeat = path, holder, heartbeat
        self._inode, self._record = inode, json.dumps(asdict(holder))
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _is_mine(self) -> bool:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return False
        # Both checks: a removed claim's inode number may be reused by the next one.
        return (stat.st_dev, stat.st_ino) == self._inode and _read(self.path) == self._record

    def refresh(self) -> None:
        """Mark the claim alive now (its mtime), if it is still this run's."""
        with contextlib.suppress(OSError):
            if self._is_mine():
                os.utime(self.path)

    def release(self) -> None:
        """Stop refreshing and remove the claim if it is still this run's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with contextlib.suppress(FileNotFoundError):
            if self._is_mine():
                os.remove(self.path)

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            self.refresh()

    def __enter__(self) -> Claim:
        self._thread = threading.Thread(target=self._beat, daemon=True,
                                        name="glnet-claim-heartbeat")
        self._thread.start()
        return self

    def __exit__(self, kind: Optional[type[BaseException]], exc: Optional[BaseException],
                 tb: Optional[TracebackType]) -> None:
        self.release()


def try_claim(target: str, *, stale_after: float = STALE_AFTER_S,
              heartbeat: float = HEARTBEAT_S) -> Optional[Claim]:
    """Claim ``target`` for this process; None when another live run holds it.

    A stale claim (see :func:`is_stale`) is taken over. Errors creating the
    claim (a read-only folder) propagate as ``OSError``; the run that follows
    would fail on the same folder anyway.
    """
    path = claim_path(target)
    for _ in range(3):  # each retry follows another run's move: a release or a take-over
        holder = Holder.me()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if not _take_over(path, stale_after):
                return None
            continue
        try:
            os.write(fd, json.dumps(asdict(holder)).encode("ascii"))
            stat = os.fstat(fd)
        finally:
            os.close(fd)  # closing sends the record to an NFS server (close-to-open)
        return Claim(path, holder, (stat.st_dev, stat.st_ino), heartbeat)
    return None


def _take_over(path: str, stale_after: float) -> bool:
    """Move a stale claim out of the way; False when the claim is live (or was just renewed).

    The claim is renamed to a unique name, so that of several runs that saw it
    stale only one moves it. If what was moved is not the claim judged stale
    (its holder released it and another run claimed anew in between), it is
    put back.
    """
    try:
        before = os.stat(path)
    except FileNotFoundError:
        return True  # released meanwhile: try again
    text = _read(path)
    holder = _parse(text)
    if not is_stale(path, holder, stale_after=stale_after):
        return False
    grave = f"{path}.stale-{secrets.token_hex(4)}"
    try:
        os.rename(path, grave)
    except FileNotFoundError:
        return True  # another run moved it first: try again (its fresh claim will stop us)
    moved = os.stat(grave)
    # Both checks, as in Claim._is_mine.
    if (moved.st_dev, moved.st_ino) != (before.st_dev, before.st_ino) or _read(grave) != text:
        with contextlib.suppress(OSError):
            os.link(grave, path)  # never over a claim made since
        os.remove(grave)
        return False
    os.remove(grave)
    logger.info("%s: took over a claim left by %s", path,
                f"pid {holder.pid} on {holder.host}" if holder else "an unknown run")
    return True


#: Why a batch does not make a target: it exists, or another live run holds its claim.
EXISTS, TAKEN = "exists", "another run has it"


@contextlib.contextmanager
def claim_unless_done(target: str, *, stale_after: float = STALE_AFTER_S,
                      heartbeat: float = HEARTBEAT_S) -> Iterator[Optional[str]]:
    """Yield None while holding ``target``'s claim, or why not to make it (:data:`EXISTS`,
    :data:`TAKEN`).

    The target is looked for again once claimed: a run that published it and
    released its claim just before is not followed by a second run.
    """
    if os.path.exists(target):
        yield EXISTS
        return
    claim = try_claim(target, stale_after=stale_after, heartbeat=heartbeat)
    if claim is None:
        yield TAKEN
        return
    with claim:
        yield EXISTS if os.path.exists(target) else None
