"""Shards this builder claims: a lock per shard, so builders sharing an output folder split
the shards between them instead of writing one twice.

A shard's lock is `output_dir/.<shard name>.lock` (`l3.core.locks.OwnerLock`: the
holder's host, pid and start time). A builder claims a shard when it starts feeding
that shard's videos to its decoders (so two builders started together share the
work) and releases it once the shard and its sidecar are in place. Then:

* a shard whose lock a live builder holds is skipped, with one line naming the
  holder; that builder writes it;
* a lock left by a builder that died (SIGKILL, a crash) is taken over, with one line;
* a shard finished by another builder between this one's plan and its claim is
  not written again (with `overwrite`: a sidecar written after this run started
  marks such a shard).

A SIGTERM or SIGINT removes the lock files of this process with its temporary
files (`l3.core.temps`).
"""

import collections
import dataclasses
import logging
import os
import time
from typing import Callable, Deque, Iterator, List, Optional, Sequence

from l3.core import locks, temps

from . import shards
from .inputs import VideoItem

log = logging.getLogger(__name__)


def lock_path(output_dir: str, name: str) -> str:
    return os.path.join(output_dir, f".{name}.lock")


@dataclasses.dataclass
class Claim:
    """A shard this process holds the lock of, and how many of its videos are still to come."""

    split: str
    index: int
    name: str
    videos: Sequence[VideoItem]
    lock: locks.OwnerLock
    remaining: int
    writer: Optional[object] = None  # shards.ShardWriter, once its first video arrives


class Claims:
    """Claims shards lazily (`videos`), in plan order, and keeps the claimed ones in `queue`.

    own: the run's counters ("shards_resumed", "shards_held", "videos_seen",
    "videos_written"), updated for shards skipped at claim time. on_skip(n)
    is told of each skipped shard's video count (the progress bar's total).
    """

    def __init__(self, output_dir: str, *, overwrite: bool, own: dict,
                 on_skip: Callable[[int], None] = lambda n: None,
                 check_settings: Callable[[dict, str], None] = lambda sidecar, name: None):
        self.output_dir, self.overwrite, self.own = output_dir, overwrite, own
        self.on_skip, self.check_settings = on_skip, check_settings
        self.started = time.time()
        self.queue: Deque[Claim] = collections.deque()
        self.held_by_others: List[str] = []

    def videos(self, todo) -> Iterator[VideoItem]:
        """The videos of each shard of `todo` [(split, index, name, videos)] this process
        gets the lock of, in order; claimed shards are appended to `queue` first."""
        for split, index, name, videos in todo:
            claim = self._claim(split, index, name, videos)
            if claim is not None:
                self.queue.append(claim)
                yield from videos

    def _claim(self, split, index, name, videos) -> Optional[Claim]:
        lock = locks.OwnerLock(lock_path(self.output_dir, name))
        holder = lock.try_acquire()
        if holder is not None:
            log.warning("%s is being written by another builder (%s; %s): skipping it", name,
                        locks.describe(holder), lock.path)
            self.own["shards_held"] += 1
            self.held_by_others.append(name)
            self.on_skip(len(videos))
            return None
        temps.register(lock.path)  # a signal removes it with the temporaries
        if lock.took_over:
            log.warning("%s: taking over the lock of a builder that is gone (%s)", name,
                        locks.describe(lock.took_over))
        sidecar = shards.load_finished(self.output_dir, name)
        if sidecar is not None and (not self.overwrite or self._written_since_start(name)):
            self.release(lock)
            self.check_settings(sidecar, name)
            log.info("%s was finished by another builder meanwhile: not writing it again", name)
            self.own["shards_resumed"] += 1
            self.own["videos_seen"] += sidecar["videos_seen"]
            self.own["videos_written"] += sidecar["videos_written"]
            self.on_skip(len(videos))
            return None
        return Claim(split, index, name, videos, lock, remaining=len(videos))

    def _written_since_start(self, name: str) -> bool:
        try:
            return os.path.getmtime(shards.stats_path(self.output_dir, name)) >= self.started
        except OSError:
            return False

    @staticmethod
    def release(lock: locks.OwnerLock) -> None:
        temps.forget(lock.path)
        lock.release()

    def close(self) -> None:
        """Aborts every claimed shard still open and releases its lock (an error, a stop)."""
        while self.queue:
            claim = self.queue.popleft()
            if claim.writer is not None:
                claim.writer.abort()
            self.release(claim.lock)
