"""Facts about Keras models that exporters, runners and training share: the input and output
names, the serving signature every TF-based converter starts from, safe loading, TF's threads."""

from __future__ import annotations

from pathlib import Path

from toolkit.arrays import zip_equal
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


def keras_output_names(model) -> list[str]:
    """The Keras names of the outputs (the layers that produce them), in the model's order."""
    names = getattr(model, "output_names", None)
    if names:
        return list(names)
    return [tensor._keras_history.operation.name for tensor in model.outputs]


def io_names(model) -> tuple[list[str], list[str]]:
    """The input and output names every format gives the model: `images` and `probabilities`
    for one input and one output (the names files have always had), else the Keras names."""
    if len(model.inputs) == 1 and len(model.outputs) == 1:
        return [INPUT_NAME], [OUTPUT_NAME]
    return [tensor.name for tensor in model.inputs], keras_output_names(model)


def call_model(model, inputs: dict, training: bool = False) -> dict:
    """The model on inputs by name (`io_names`), its outputs by name in the Keras order."""
    import keras

    in_names, out_names = io_names(model)
    # Keras matches a dict to the Input layers' names, however the model was built.
    given = inputs[in_names[0]] if len(in_names) == 1 else {n: inputs[n] for n in in_names}
    flat = keras.tree.flatten(model(given, training=training))
    return dict(zip_equal(out_names, flat))


def serving_function(model, batch: int | None = None):
    """A tf.function with an explicit signature: inputs and outputs named by `io_names`.

    Every TF-based converter starts from it, so all formats share the same names and layout.
    A fixed `batch` makes every shape in the graph static: no ops computing the batch at run
    time, which the GPU delegate, TFLM and NPU compilers would otherwise have to take.
    """
    import tensorflow as tf

    in_names, _ = io_names(model)
    specs = {
        name: tf.TensorSpec((batch, *tensor.shape[1:]), tf.float32, name=name)
        for name, tensor in zip_equal(in_names, model.inputs)
    }
    if len(specs) == 1:  # one positional argument: the signature TF tools expect of one input

        @tf.function(input_signature=list(specs.values()))
        def serve(images):
            return call_model(model, {in_names[0]: images})

        return serve

    @tf.function(input_signature=[specs])
    def serve_named(inputs):
        return call_model(model, inputs)

    return serve_named


def free_input_dims(model) -> dict[str, tuple]:
    """Inputs whose dimensions other than the batch are not fixed, by Keras input name."""
    return {t.name: tuple(t.shape[1:]) for t in model.inputs if None in tuple(t.shape[1:])}


def with_input_shapes(model, shapes: dict[str, tuple[int, ...]], path: Path):
    """The model rebuilt with its free input dimensions fixed (`--input-shape`), same weights:
    converters need static shapes. `shapes` by Keras input name, or "" for a one-input model."""
    import keras

    if "" in shapes and len(model.inputs) == 1:
        shapes = {model.inputs[0].name: shapes[""]}
    unknown = sorted(set(shapes) - {t.name for t in model.inputs})
    if unknown:
        names = ", ".join(t.name for t in model.inputs)
        raise ToolkitError(
            f"--input-shape {unknown[0]}: the model has no such input (inputs: {names})",
            ExitCode.USAGE,
        )
    new_inputs = []
    for tensor in model.inputs:
        old = tuple(tensor.shape[1:])
        shape = tuple(shapes.get(tensor.name, old))
        fits = len(shape) == len(old) and all(o in (None, s) for o, s in zip_equal(old, shape))
        if not fits:
            raise ToolkitError(
                f"--input-shape {tensor.name}={','.join(map(str, shape))}: does not fit the "
                f"input's shape {old}",
                ExitCode.USAGE,
            )
        new_inputs.append(keras.Input(shape, dtype=tensor.dtype, name=tensor.name))
    try:
        structure = keras.tree.pack_sequence_as(model.input, new_inputs)
        fixed = keras.models.clone_model(model, input_tensors=structure)
        fixed.set_weights(model.get_weights())
    except Exception as exc:  # noqa: BLE001 - Keras raises many types for a model it cannot clone
        raise ToolkitError(
            f"{path}: cannot fix its input shapes ({first_line(exc)})", ExitCode.ARTIFACT
        ) from None
    check_model_io(fixed, path)
    return fixed


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
    check_model_io(model, path, free_inputs_ok=True)
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


def check_model_io(model, path: Path, free_inputs_ok: bool = False) -> None:
    """Any model with float inputs of fixed shape (batch aside) and one or more outputs can be
    exported and compared; say what was found otherwise. `free_inputs_ok`: inputs with free
    dimensions are accepted (to be fixed by --input-shape before anything is converted)."""
    inputs, outputs = getattr(model, "inputs", None), getattr(model, "outputs", None)
    if not inputs or not outputs:
        found = f"{len(inputs or [])} inputs and {len(outputs or [])} outputs"
        raise ToolkitError(
            f"{path}: expected at least one input and one output, found {found}",
            ExitCode.ARTIFACT,
        )
    names = [t.name for t in inputs] + keras_output_names(model)
    if len(set(names)) != len(names):
        raise ToolkitError(
            f"{path}: input and output names repeat ({', '.join(names)}); give each a name",
            ExitCode.ARTIFACT,
        )
    for tensor in inputs:
        shape = tuple(tensor.shape)
        if any(d is None for d in shape[1:]) and not free_inputs_ok:
            option = f"{tensor.name}=" if len(inputs) > 1 else ""
            example = ",".join("H" if d is None else str(d) for d in shape[1:])
            raise ToolkitError(
                f"{path}: input {tensor.name!r} has free dimensions {shape}; fix them with "
                f"--input-shape {option}{example.replace('H,H', 'H,W')}",
                ExitCode.ARTIFACT,
            )
        dtype = str(tensor.dtype)
        if not dtype.startswith(("float", "bfloat")):
            raise ToolkitError(
                f"{path}: input {tensor.name!r} is {dtype}; expected a float input (feed the "
                "model float features)",
                ExitCode.ARTIFACT,
            )
    for name, tensor in zip_equal(keras_output_names(model), outputs):
        if any(d is None for d in tuple(tensor.shape)[1:]) and not free_inputs_ok:
            raise ToolkitError(
                f"{path}: output {name!r} has free dimensions {tuple(tensor.shape)}",
                ExitCode.ARTIFACT,
            )
