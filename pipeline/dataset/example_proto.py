"""The ``tf.train`` record messages (Example, SequenceExample and their parts) without TensorFlow.

Every worker that assembles, checks or resumes records needs these nine protobuf messages, and
nothing else of TensorFlow; importing TensorFlow for them costs each Beam SDK process several
seconds and about 750 MB (a Dataflow VM runs one process per vCPU, and with the models shared
per machine only one of them holds a model). The messages are declared here from TensorFlow's
``tensorflow/core/example/{feature,example}.proto`` (same package, names, field numbers and
types), so their wire format is the same and a record serialized with either parses with the
other (tests/unit/dataset/test_records.py checks byte equality both ways). They live in a private descriptor
pool, so they never clash with TensorFlow's own when both are loaded in one process.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_PACKAGE = "tensorflow"
_FIELD = descriptor_pb2.FieldDescriptorProto


def _message(file: descriptor_pb2.FileDescriptorProto, name: str,
             fields: list[tuple[str, int, int, int, str]], oneof: str | None = None) -> descriptor_pb2.DescriptorProto:
    """Adds message `name` with fields (name, number, type, label, type_name) to `file`."""
    message = file.message_type.add(name=name)
    if oneof:
        message.oneof_decl.add(name=oneof)
    for field_name, number, field_type, label, type_name in fields:
        field = message.field.add(name=field_name, number=number, type=field_type, label=label)
        if type_name:
            field.type_name = type_name
        if oneof:
            field.oneof_index = 0
    return message


def _map_field(message: descriptor_pb2.DescriptorProto, name: str, entry: str, value_type: str) -> None:
    """A ``map<string, value_type> name = 1`` field of `message` (a repeated map-entry message)."""
    nested = message.nested_type.add(name=entry)
    nested.options.map_entry = True
    nested.field.add(name="key", number=1, type=_FIELD.TYPE_STRING, label=_FIELD.LABEL_OPTIONAL)
    nested.field.add(name="value", number=2, type=_FIELD.TYPE_MESSAGE, label=_FIELD.LABEL_OPTIONAL,
                     type_name=value_type)
    message.field.add(name=name, number=1, type=_FIELD.TYPE_MESSAGE, label=_FIELD.LABEL_REPEATED,
                      type_name=f".{_PACKAGE}.{message.name}.{entry}")


def _file() -> descriptor_pb2.FileDescriptorProto:
    file = descriptor_pb2.FileDescriptorProto(name="video_features/tf_example.proto", package=_PACKAGE,
                                              syntax="proto3")
    repeated, optional = _FIELD.LABEL_REPEATED, _FIELD.LABEL_OPTIONAL
    _message(file, "BytesList", [("value", 1, _FIELD.TYPE_BYTES, repeated, "")])
    floats = _message(file, "FloatList", [("value", 1, _FIELD.TYPE_FLOAT, repeated, "")])
    ints = _message(file, "Int64List", [("value", 1, _FIELD.TYPE_INT64, repeated, "")])
    floats.field[0].options.packed = ints.field[0].options.packed = True
    _message(file, "Feature", [("bytes_list", 1, _FIELD.TYPE_MESSAGE, optional, ".tensorflow.BytesList"),
                               ("float_list", 2, _FIELD.TYPE_MESSAGE, optional, ".tensorflow.FloatList"),
                               ("int64_list", 3, _FIELD.TYPE_MESSAGE, optional, ".tensorflow.Int64List")],
             oneof="kind")
    _map_field(file.message_type.add(name="Features"), "feature", "FeatureEntry", ".tensorflow.Feature")
    _message(file, "FeatureList", [("feature", 1, _FIELD.TYPE_MESSAGE, repeated, ".tensorflow.Feature")])
    _map_field(file.message_type.add(name="FeatureLists"), "feature_list", "FeatureListEntry",
               ".tensorflow.FeatureList")
    _message(file, "Example", [("features", 1, _FIELD.TYPE_MESSAGE, optional, ".tensorflow.Features")])
    _message(file, "SequenceExample", [("context", 1, _FIELD.TYPE_MESSAGE, optional, ".tensorflow.Features"),
                                       ("feature_lists", 2, _FIELD.TYPE_MESSAGE, optional,
                                        ".tensorflow.FeatureLists")])
    return file


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file())


def _class(name: str):
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{_PACKAGE}.{name}"))


BytesList = _class("BytesList")
FloatList = _class("FloatList")
Int64List = _class("Int64List")
Feature = _class("Feature")
Features = _class("Features")
FeatureList = _class("FeatureList")
FeatureLists = _class("FeatureLists")
Example = _class("Example")
SequenceExample = _class("SequenceExample")
