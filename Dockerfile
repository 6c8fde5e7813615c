# Custom Dataflow worker image: the pinned requirements and this package, preinstalled, so workers
# start without a pip install each (docs/dataflow.md, custom container). Build and push:
#   docker build -t REGION-docker.pkg.dev/PROJECT/REPO/video-features:0.1.0 .
#   docker push REGION-docker.pkg.dev/PROJECT/REPO/video-features:0.1.0
# then run with --sdk_container_image=THAT_TAG --experiments=use_runner_v2 (and no --setup_file).
# The Beam SDK image's version must equal the apache-beam pin in requirements.txt
# (tests/e2e/test_dataflow_job.py checks it); its Python must match the launcher's.
# Inference runtime: TensorFlow on CPU and on GPU workers alike; nothing else to install. OpenVINO and
# ONNX Runtime were measured no faster in FP32 on CPU and are not used (docs/runtime.md).
ARG PYTHON_VERSION=3.11
ARG BEAM_VERSION=2.77.0
FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_CPP_MIN_LOG_LEVEL=2

WORKDIR /opt/video-features
COPY requirements.txt requirements-report.txt MANIFEST.in setup.py ./
RUN pip install -r requirements.txt
COPY pipeline ./pipeline
COPY transforms ./transforms
# requirements.txt brings deno and yt-dlp-ejs (YouTube's JS challenges); doctor fails the image build
# when ffmpeg lacks something the build uses or yt-dlp cannot see the deno binary.
RUN pip install --no-deps . \
    && python -c "import imageio_ffmpeg, pipeline.build; print(imageio_ffmpeg.get_ffmpeg_exe())" \
    && python -m pipeline.doctor --models synthetic

# The SDK harness entry point comes from the base image.
