/** Generates a throwaway CA and certificates with openssl, for the mutual TLS tests. */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export interface Pem {
  cert: Buffer;
  key: Buffer;
  certFile: string;
  keyFile: string;
}

export class TestPki {
  readonly dir = mkdtempSync(join(tmpdir(), "pw-pki-"));
  readonly ca: Pem;

  constructor(name = "PokerWorks Test CA") {
    this.ca = this.selfSigned("ca", name);
  }

  private openssl(args: string[]): void {
    execFileSync("openssl", args, { cwd: this.dir, stdio: "pipe" });
  }

  private selfSigned(file: string, cn: string): Pem {
    this.openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2", "-subj", `/CN=${cn}`,
      "-keyout", `${file}-key.pem`, "-out", `${file}.pem`, "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]);
    return this.read(file);
  }

  private read(file: string): Pem {
    const certFile = join(this.dir, `${file}.pem`);
    const keyFile = join(this.dir, `${file}-key.pem`);
    return { cert: readFileSync(certFile), key: readFileSync(keyFile), certFile, keyFile };
  }

  /** A leaf certificate signed by this CA with the given subjectAltName (e.g. "DNS:console-backend"). */
  issue(file: string, san: string, usage: "serverAuth" | "clientAuth"): Pem {
    writeFileSync(join(this.dir, `${file}.ext`), `subjectAltName=${san}\nextendedKeyUsage=${usage}\nbasicConstraints=CA:FALSE\n`);
    this.openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", `/CN=${file}`, "-keyout", `${file}-key.pem`, "-out", `${file}.csr`]);
    this.openssl(["x509", "-req", "-in", `${file}.csr`, "-CA", "ca.pem", "-CAkey", "ca-key.pem", "-CAcreateserial", "-days", "2", "-extfile", `${file}.ext`, "-out", `${file}.pem`]);
    return this.read(file);
  }
}
