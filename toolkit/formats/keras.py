"""Facts about Keras models that exporters, runners and training share: the input and output
names, the serving signature every TF-based converter starts from, safe loading, TF's threads."""

from __future__ import annotations

from pathlib import Path

from toolkit.errors import ExitCode, ToolkitError, first_line

INPUT_NAME = "images"


OUTPUT_NAME = "probabilities"


def set_tf_threads(threads: int) -> None:
    """Pins TensorFlow's pools as ONNX Runtime's are (intra `threads`, inter-op 1); only possible
    before TF's runtime starts, so a no-op later."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass


def serving_function(model, batch: int | None = None):
    """A tf.function with an explicit signature: input `images`, output `probabilities`.

    Every TF-based converter starts from it, so all formats share the same names and layout.
    A fixed `batch` makes every shape in the graph static: no ops computing the batch at run
    time, which the GPU delegate, TFLM and NPU compilers would otherwise have to take.
    """
    import tensorflow as tf

    spec = tf.TensorSpec((batch, *model.inputs[0].shape[1:]), tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def serve(images):
        return {OUTPUT_NAME: model(images, training=False)}

    return serve


def load_keras_model(path: Path):
    """A `.keras` file loaded with safe_mode=True, refused with a clear reason when it is not one.

    Model files are code (Keras, TF and ONNX security policies say so): legacy formats that need
    unsafe deserialization are never loaded, and the model's shape is checked before any use.
    """
    import zipfile

    from toolkit.fsio import check_artifact_file

    path = Path(path)
    if path.suffix.lower() in (".h5", ".hdf5"):
        raise ToolkitError(
            f"{path}: legacy HDF5 model refused (loading it is not safe); convert it where you "
            "trust it: keras.models.load_model(path).save('model.keras')",
            ExitCode.ARTIFACT,
        )
    if path.suffix.lower() != ".keras":
        raise ToolkitError(f"{path}: expected a .keras model file", ExitCode.ARTIFACT)
    if not path.is_file():
        raise ToolkitError(f"{path}: model file not found", ExitCode.ARTIFACT)
    check_artifact_file(path)
    if not zipfile.is_zipfile(path):
        raise ToolkitError(
            f"{path}: not a Keras archive (empty, truncated or another format)", ExitCode.ARTIFACT
        )
    check_unpacked_size(path)
    import keras

    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a bad archive
        reason = first_line(exc)
        raise ToolkitError(
            f"{path}: cannot load as a Keras model: {reason}", ExitCode.ARTIFACT
        ) from None
    check_model_io(model, path)
    return model


# Keras stores weights uncompressed-ish (float data barely deflates): a real archive unpacks to
# a few times its size. Far more is a zip bomb, refused before Keras extracts anything.
MAX_UNPACK_RATIO = 100


MAX_UNPACK_SLACK = 16 << 20  # config, metadata and tiny models compress well: some room


def check_unpacked_size(path: Path) -> None:
    """Refuses a `.keras` archive whose members would unpack to far more than the file's size."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ToolkitError(
            f"{path}: not a Keras archive ({first_line(exc)})", ExitCode.ARTIFACT
        ) from None
    limit = MAX_UNPACK_RATIO * path.stat().st_size + MAX_UNPACK_SLACK
    if unpacked > limit:
        raise ToolkitError(
            f"{path}: its members unpack to {unpacked} bytes, over {limit} for a file of this "
            "size (a zip bomb?); refusing to load it",
            ExitCode.ARTIFACT,
        )


def check_model_io(model, path: Path) -> None:
    """Any model with one float input of fixed shape (batch aside) and one output can be
    exported and compared; say what was found otherwise."""
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if not inputs or not outputs or len(inputs) != 1 or len(outputs) != 1:
        found = f"{len(inputs or [])} inputs and {len(outputs or [])} outputs"
        raise ToolkitError(
            f"{path}: expected one input and one output, found {found}", ExitCode.ARTIFACT
        )
    input_shape, output_shape = tuple(inputs[0].shape), tuple(outputs[0].shape)
    if any(d is None for d in input_shape[1:]) or any(d is None for d in output_shape[1:]):
        raise ToolkitError(
            f"{path}: dimensions other than the batch must be fixed, found input "
            f"{input_shape} and output {output_shape}",
            ExitCode.ARTIFACT,
        )
    dtype = str(inputs[0].dtype)
    if not dtype.startswith(("float", "bfloat")):
        raise ToolkitError(
            f"{path}: expected a float input, found {dtype}; feed the model float features",
            ExitCode.ARTIFACT,
        )
