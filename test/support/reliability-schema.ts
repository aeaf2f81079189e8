/**
 * The contract as the hostile-input suite sees it: every service, method and request field of
 * pokerworks.identity.v1, read from src/generated/descriptors.binpb (what `npm run generate`
 * builds from proto/), so an RPC added to the contract is fuzzed without touching the suite.
 */
import { fromBinary } from "@bufbuild/protobuf";
import {
  type DescriptorProto,
  type EnumDescriptorProto,
  FieldDescriptorProto_Label as Label,
  FieldDescriptorProto_Type as Type,
  FileDescriptorSetSchema,
} from "@bufbuild/protobuf/wkt";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";

export const PACKAGE = "pokerworks.identity.v1";

export type FieldKind = "string" | "bytes" | "bool" | "enum" | "varint" | "fixed32" | "fixed64" | "message";

export interface Field {
  name: string;
  number: number;
  kind: FieldKind;
  repeated: boolean;
  /** Full name (".pkg.Msg") of a message or enum field's type. */
  typeName: string;
}

export interface Method {
  service: string;
  name: string;
  path: string;
  input: string;
  output: string;
  /** Get*, List*, Authorize: answering OK must not write anything either. */
  readOnly: boolean;
}

export interface Contract {
  methods: Method[];
  messages: Map<string, Field[]>;
  /** Enum full name → its defined numbers. */
  enums: Map<string, number[]>;
}

function kindOf(type: Type): FieldKind {
  switch (type) {
    case Type.STRING:
      return "string";
    case Type.BYTES:
      return "bytes";
    case Type.BOOL:
      return "bool";
    case Type.ENUM:
      return "enum";
    case Type.MESSAGE:
    case Type.GROUP:
      return "message";
    case Type.FIXED32:
    case Type.SFIXED32:
    case Type.FLOAT:
      return "fixed32";
    case Type.FIXED64:
    case Type.SFIXED64:
    case Type.DOUBLE:
      return "fixed64";
    default:
      return "varint";
  }
}

export function loadContract(path = resolve(__dirname, "../../src/generated/descriptors.binpb")): Contract {
  const files = fromBinary(FileDescriptorSetSchema, readFileSync(path)).file;
  const messages = new Map<string, Field[]>();
  const enums = new Map<string, number[]>();
  const addEnum = (scope: string, e: EnumDescriptorProto) => enums.set(`${scope}.${e.name}`, e.value.map((v) => v.number));
  const addMessage = (scope: string, m: DescriptorProto) => {
    const name = `${scope}.${m.name}`;
    messages.set(
      name,
      m.field.map((f) => ({ name: f.name, number: f.number, kind: kindOf(f.type), repeated: f.label === Label.REPEATED, typeName: f.typeName })),
    );
    for (const n of m.nestedType) addMessage(name, n);
    for (const e of m.enumType) addEnum(name, e);
  };
  for (const file of files) {
    for (const m of file.messageType) addMessage(`.${file.package}`, m);
    for (const e of file.enumType) addEnum(`.${file.package}`, e);
  }
  const methods: Method[] = [];
  for (const file of files) {
    if (file.package !== PACKAGE) continue;
    for (const service of file.service)
      for (const method of service.method)
        methods.push({
          service: service.name,
          name: method.name,
          path: `/${file.package}.${service.name}/${method.name}`,
          input: method.inputType,
          output: method.outputType,
          readOnly: /^(Get|List|Authorize|Check|Describe)/.test(method.name),
        });
  }
  return { methods, messages, enums };
}
