"""The bundled small audio-visual corpus: synthetic videos with learnable AVC.

`generate_corpus(root)` writes real mp4 files (h264 + AAC, through
`l3.media.write_video`) of a few seconds each, in classes where the picture
and the sound share the class identity (plus, within a class, the object's
size, which sets the pitch, and the timing of events) and nothing else:

    root/<split>/<class_name>/<youtube_id>_<start:06d>_<end:06d>.mp4
    root/videos.csv    Kinetics style: label,youtube_id,time_start,time_end,split
    root/corpus.json   parameters, class descriptions, per-video metadata
    root/objects.json  per frame of each test and scene video, the object's box and mask
                       (rendered alone: its pixels are the truth) and the distractor's or
                       bystander's box, in the l3-boxes format `l3-localize` reads (`objects`)

File names follow the Kinetics download layout, so anything that reads
Kinetics reads this corpus. Labels are for evaluation only; L3 never sees
them.

Classes (`CLASSES`, the first `num_classes` are used; picture / sound):

    bouncing_ball  red shaded ball bouncing    / pitch-dropping thud at each floor contact
    siren          blue van, flashing lamp     / wailing tone sweeping +-30 % (lamp follows pitch)
    bird           yellow bird flapping        / bursts of fast 4.5 -> 2.8 kHz down-chirps
    engine         green truck, turning wheels / 70 Hz harmonic buzz, rpm drift, rumble
    drum           striped red drum, stick     / snare + tom hits in a steady accented beat
    bell           purple bell swinging        / inharmonic partials, long decay, struck at swing ends
    water          cyan pond, moving ripples   / band-passed hiss with droplet plinks
    clock          white face, stepping hand   / alternating tick / tock clicks
    whistle        green tube, lit hole        / vibrato tone stepping through a pentatonic tune
    dog            brown dog hopping           / harmonic barks in pairs

Learnable from one frame and one second: the object is in every frame (its
centre stays within 26-74 % of the width, so every 64x64 crop of the frame
resized to 72 holds part of it) and every class sound has an event at least
every ~1 s (siren, engine, water, whistle are continuous); muted stretches
last at most 0.6 s. Every object comes in two sizes, and size sets pitch
(1 / size: the large one sounds ~9 semitones lower) and tempo, so same-class
negatives can be told apart too; event sounds coincide with what is seen
(bounce, lamp, chirp/beak, hit, swing end, droplet, tick, lit hole, hop).

Not trivial: hues overlap (ball, drum, dog are red-brown; engine and whistle
green; water and siren blue), backgrounds are random smooth colour fields
with clutter, a floor, sometimes a shape passing behind, camera pan and
shake, flicker and sensor noise, so the mean colour of a frame says nothing
about the class (tests check this); position, size, speed and pitch vary per
video. The sound has coloured background noise (14-30 dB below the peak),
mains hum, off-screen sounds (speech, horn, knocks, another class's sound),
muted stretches, and `unrelated_fraction` of each split's videos carry music
or speech instead of the object's sound (`sound_related: false`).

The scene split (`plan.scene_params`), for sound-source localization only (nothing
trains or is evaluated for AVC, NMI or the SVM on it): two objects of different classes
side by side, each in the middle of its half of the frame (the sounding one on the left
or the right by a fair coin) and drawn 1.5 x larger (`SCENE_ZOOM`), so that a box can
reach the median rule's cIoU 0.5 (it needs a quarter of the frame: ~58 % of scene
boxes, 20 % at the other splits' size); the video's soundtrack is its label's object,
the other object (the bystander) moves but is silent. Which of two objects sounds is
what a sound-conditioned map can answer and a sound-free one cannot.

Defaults (10 classes x 32 / 6 / 10 videos + 10 scenes, 4-6 s, 160x120 at 8 fps, AAC
at 22.05 / 44.1 / 48 kHz, a fifth in stereo): 480 videos + 100 scenes, 34 MB, ~62 CPU-s
(~31 s with `workers=2` on 2 idle cores; x264 ~15 %, AAC ~45 %, rendering
the rest). 160x120 is above the small preset's 72-pixel side; 8 fps gives
8 candidate frames per second of audio; mixed rates and channel counts
exercise the builder's resampling and down-mixing. The held-out split has
100 videos for AVC, NMI and SVM evaluation. Object sizes were set with a
proxy run of the small preset (see `OBJECT_SIZE`).

Determinism: each video is drawn from its own `SeedSequence(seed, version,
split, class, index)`, so its content does not depend on `workers`, on the
other videos or on the split sizes; the same seed gives the same arrays and,
with the same FFmpeg build, byte-identical files (`VIDEO_OPTIONS`).

Modules, in the order they build on each other:

    primitives  soft-edged shapes painted into float32 [H, W, 3]; oscillators, filters, events
    classes     `AVClass` and `CLASSES`: per-class setup, picture and sound sharing events
    nuisance    backgrounds, speech, music, horn, knocks (sounds of no class)
    plan        `CorpusParams`, `VideoPlan`, `plan_corpus`: every random choice, cheap
    render      a plan -> frames uint8 [T, H, W, 3] and audio float32 [samples(, 2)] (a scene's
                two objects each drawn in its half of the canvas)
    objects     where the object is in each frame (boxes, masks), for localization
    write       mp4 files, videos.csv, corpus.json, objects.json; locking, resuming, `generate_corpus`
"""

from l3.demo.corpus.classes import CLASSES, OBJECT_SIZE, VARIANTS, AVClass
from l3.demo.corpus.plan import (CORPUS_VERSION, DEFAULT_VIDEOS_PER_CLASS, SCENE_ZOOM, SPLITS, CorpusParams,
                            VideoPlan, class_params, plan_corpus, plan_video, scene_params)
from l3.demo.corpus.objects import OBJECT_SPLITS, OBJECTS_NAME, object_coverage, video_annotation
from l3.demo.corpus.render import (draw_object, frame_offsets, render_audio, render_frames,
                                   render_video)
from l3.demo.corpus.write import (CSV_NAME, JSON_NAME, VIDEO_OPTIONS, CorpusInfo, default_corpus_dir,
                             generate_corpus, load_corpus, write_corpus_video)

__all__ = [
    "AVClass", "CLASSES", "CORPUS_VERSION", "CSV_NAME", "CorpusInfo", "CorpusParams",
    "DEFAULT_VIDEOS_PER_CLASS", "JSON_NAME", "OBJECT_SIZE", "SCENE_ZOOM", "SPLITS", "VARIANTS",
    "VIDEO_OPTIONS", "scene_params",
    "VideoPlan", "class_params", "default_corpus_dir", "draw_object", "generate_corpus",
    "load_corpus", "OBJECT_SPLITS", "OBJECTS_NAME", "object_coverage", "frame_offsets",
    "video_annotation", "plan_corpus", "plan_video", "render_audio", "render_frames", "render_video",
    "write_corpus_video",
]
