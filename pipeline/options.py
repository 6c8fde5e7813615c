"""Command-line options of the dataset builder, as a Beam PipelineOptions subclass."""

from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions

from pipeline.models import registry


class BuildOptions(PipelineOptions):
    """Flags of `python -m pipeline.build`; every other flag goes to Beam (--runner, ...)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--input_csv", default=None,
                            help="Annotation CSV (local or gs://): headerless video_file,labels; headered "
                                 "video,labels[,id,start,end,split]; or a Kinetics CSV.")
        parser.add_argument("--output_dir", default=None, help="Dataset directory (local or gs://).")
        parser.add_argument("--models", default="yt8m", choices=registry.MODES,
                            help="yt8m: the official Inception-v3/VGGish artifacts (default). synthetic: the same "
                                 "architectures with seeded random weights, for offline smoke runs and benchmarks.")
        parser.add_argument("--model_dir", default=None,
                            help="Directory (local or gs://) holding the official model files.")
        parser.add_argument("--model_cache", default=None,
                            help=f"Where downloaded or generated model files are kept "
                                 f"(default {registry.default_model_cache()}).")
        parser.add_argument("--rgb_graph", default=None, help="Path of classify_image_graph_def.pb.")
        parser.add_argument("--rgb_pca_dir", default=None,
                            help="Directory with the YouTube-8M PCA: mean.npy, eigenvecs.npy, eigenvals.npy.")
        parser.add_argument("--audio_checkpoint", default=None, help="Path (prefix) of vggish_model.ckpt.")
        parser.add_argument("--audio_pca", default=None, help="Path of vggish_pca_params.npz.")
        parser.add_argument("--synthetic_seed", type=int, default=0, help="Seed of --models synthetic.")
        parser.add_argument("--rgb_batch_size", type=int, default=32, help="Frames per Inception-v3 call.")
        parser.add_argument("--audio_batch_size", type=int, default=64, help="Examples per VGGish call.")
        parser.add_argument("--records_per_shard", type=int, default=1000,
                            help="Records per TFRecord shard; the shard count per split follows from it.")
        parser.add_argument("--failures_per_shard", type=int, default=100000, help="Lines per failure-report shard.")
        parser.add_argument("--decode_timeout", type=float, default=120.0,
                            help="Seconds ffmpeg may stay silent (and network read timeout) before a clip fails.")
        parser.add_argument("--overwrite", action="store_true",
                            help="Replace an existing dataset in --output_dir instead of refusing to run.")

    # --input_csv/--output_dir are checked in validate_build(), not with required=True: Beam parses
    # every PipelineOptions subclass for any pipeline in the process, tests' TestPipelines too.
    def validate_build(self) -> list[str]:
        return [f"--{name} is required" for name in ("input_csv", "output_dir") if not getattr(self, name)]

    def model_config(self) -> registry.ModelConfig:
        return registry.ModelConfig(
            mode=self.models, seed=self.synthetic_seed, model_dir=self.model_dir, model_cache=self.model_cache,
            rgb_graph=self.rgb_graph, rgb_pca_dir=self.rgb_pca_dir, audio_checkpoint=self.audio_checkpoint,
            audio_pca=self.audio_pca)
