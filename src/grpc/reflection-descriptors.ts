/**
 * FileDescriptorProtos of the gRPC protocol services we serve that are not in our own
 * contract (src/generated/descriptors.binpb): grpc/health/v1/health.proto and the two
 * grpc/reflection/{v1,v1alpha}/reflection.proto. Server reflection must describe them too,
 * or `grpcurl describe` fails on the services it lists.
 *
 * They are written out here (without comments) so the server needs neither a proto
 * compiler nor the .proto files at run time. test/unit/reflection-descriptors.test.ts
 * proves they are byte for byte what `buf build` makes of the upstream files shipped in
 * grpc-health-check and @grpc/reflection.
 */
import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import {
  type DescriptorProtoSchema,
  type FieldDescriptorProtoSchema,
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
  type MethodDescriptorProtoSchema,
} from "@bufbuild/protobuf/wkt";

type FieldInit = MessageInitShape<typeof FieldDescriptorProtoSchema>;
type MessageInit = MessageInitShape<typeof DescriptorProtoSchema>;
type MethodInit = MessageInitShape<typeof MethodDescriptorProtoSchema>;

const jsonName = (name: string) => name.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

function field(name: string, number: number, type: Type, extra: FieldInit = {}): FieldInit {
  return { name, number, label: Label.OPTIONAL, type, ...extra, jsonName: jsonName(name) };
}

const message = (name: string, fields: FieldInit[] = [], extra: MessageInit = {}): MessageInit => ({ name, field: fields, ...extra });

function method(pkg: string, name: string, input: string, output: string, extra: MethodInit = {}): MethodInit {
  return { name, inputType: `.${pkg}.${input}`, outputType: `.${pkg}.${output}`, ...extra };
}

const HEALTH = "grpc.health.v1";

export const healthFileDescriptor: FileDescriptorProto = create(FileDescriptorProtoSchema, {
  name: "grpc/health/v1/health.proto",
  package: HEALTH,
  syntax: "proto3",
  messageType: [
    message("HealthListRequest"),
    message(
      "HealthListResponse",
      [field("statuses", 1, Type.MESSAGE, { label: Label.REPEATED, typeName: `.${HEALTH}.HealthListResponse.StatusesEntry` })],
      {
        nestedType: [
          message("StatusesEntry", [field("key", 1, Type.STRING), field("value", 2, Type.MESSAGE, { typeName: `.${HEALTH}.HealthCheckResponse` })], {
            options: { mapEntry: true },
          }),
        ],
      },
    ),
    message("HealthCheckRequest", [field("service", 1, Type.STRING)]),
    message("HealthCheckResponse", [field("status", 1, Type.ENUM, { typeName: `.${HEALTH}.HealthCheckResponse.ServingStatus` })], {
      enumType: [
        {
          name: "ServingStatus",
          value: [
            { name: "UNKNOWN", number: 0 },
            { name: "SERVING", number: 1 },
            { name: "NOT_SERVING", number: 2 },
            { name: "SERVICE_UNKNOWN", number: 3 },
          ],
        },
      ],
    }),
  ],
  service: [
    {
      name: "Health",
      method: [
        method(HEALTH, "Check", "HealthCheckRequest", "HealthCheckResponse"),
        method(HEALTH, "Watch", "HealthCheckRequest", "HealthCheckResponse", { serverStreaming: true }),
        method(HEALTH, "List", "HealthListRequest", "HealthListResponse"),
      ],
    },
  ],
  options: {
    javaPackage: "io.grpc.health.v1",
    javaOuterClassname: "HealthProto",
    javaMultipleFiles: true,
    goPackage: "google.golang.org/grpc/health/grpc_health_v1",
    csharpNamespace: "Grpc.Health.V1",
  },
});

/** grpc/reflection/v1/reflection.proto and grpc/reflection/v1alpha/reflection.proto: the same messages. */
function reflectionFile(version: "v1" | "v1alpha"): FileDescriptorProto {
  const pkg = `grpc.reflection.${version}`;
  const ref = (name: string) => ({ typeName: `.${pkg}.${name}` });
  const inOneof = { oneofIndex: 0 };
  return create(FileDescriptorProtoSchema, {
    name: `grpc/reflection/${version}/reflection.proto`,
    package: pkg,
    syntax: "proto3",
    messageType: [
      message(
        "ServerReflectionRequest",
        [
          field("host", 1, Type.STRING),
          field("file_by_filename", 3, Type.STRING, inOneof),
          field("file_containing_symbol", 4, Type.STRING, inOneof),
          field("file_containing_extension", 5, Type.MESSAGE, { ...ref("ExtensionRequest"), ...inOneof }),
          field("all_extension_numbers_of_type", 6, Type.STRING, inOneof),
          field("list_services", 7, Type.STRING, inOneof),
        ],
        { oneofDecl: [{ name: "message_request" }] },
      ),
      message("ExtensionRequest", [field("containing_type", 1, Type.STRING), field("extension_number", 2, Type.INT32)]),
      message(
        "ServerReflectionResponse",
        [
          field("valid_host", 1, Type.STRING),
          field("original_request", 2, Type.MESSAGE, ref("ServerReflectionRequest")),
          field("file_descriptor_response", 4, Type.MESSAGE, { ...ref("FileDescriptorResponse"), ...inOneof }),
          field("all_extension_numbers_response", 5, Type.MESSAGE, { ...ref("ExtensionNumberResponse"), ...inOneof }),
          field("list_services_response", 6, Type.MESSAGE, { ...ref("ListServiceResponse"), ...inOneof }),
          field("error_response", 7, Type.MESSAGE, { ...ref("ErrorResponse"), ...inOneof }),
        ],
        { oneofDecl: [{ name: "message_response" }] },
      ),
      message("FileDescriptorResponse", [field("file_descriptor_proto", 1, Type.BYTES, { label: Label.REPEATED })]),
      message("ExtensionNumberResponse", [field("base_type_name", 1, Type.STRING), field("extension_number", 2, Type.INT32, { label: Label.REPEATED })]),
      message("ListServiceResponse", [field("service", 1, Type.MESSAGE, { label: Label.REPEATED, ...ref("ServiceResponse") })]),
      message("ServiceResponse", [field("name", 1, Type.STRING)]),
      message("ErrorResponse", [field("error_code", 1, Type.INT32), field("error_message", 2, Type.STRING)]),
    ],
    service: [
      {
        name: "ServerReflection",
        method: [
          method(pkg, "ServerReflectionInfo", "ServerReflectionRequest", "ServerReflectionResponse", {
            clientStreaming: true,
            serverStreaming: true,
          }),
        ],
      },
    ],
    options:
      version === "v1"
        ? {
            javaPackage: "io.grpc.reflection.v1",
            javaOuterClassname: "ServerReflectionProto",
            javaMultipleFiles: true,
            goPackage: "google.golang.org/grpc/reflection/grpc_reflection_v1",
          }
        : undefined,
  });
}

export const reflectionV1FileDescriptor = reflectionFile("v1");
export const reflectionV1alphaFileDescriptor = reflectionFile("v1alpha");

/** The serialized FileDescriptorProtos, ready to be served. */
export function builtinFileDescriptors(): Uint8Array[] {
  return [healthFileDescriptor, reflectionV1FileDescriptor, reflectionV1alphaFileDescriptor].map((f) => toBinary(FileDescriptorProtoSchema, f));
}
