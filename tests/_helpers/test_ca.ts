/**
 * A throw-away certificate authority made at run time with the `openssl` CLI: a CA, a server certificate
 * for `localhost`/`127.0.0.1` and client certificates, in a temporary folder removed on disposal.
 *
 * @module
 */
import { join } from "node:path";

/** Paths of one key pair and its certificate, PEM files. */
export interface CertFiles {
  readonly cert: string;
  readonly key: string;
}

/** A test CA in a temporary folder; issue certificates with it, dispose of it to remove the folder. */
export class TestCa implements AsyncDisposable {
  /** The folder holding every file. */
  readonly dir: string;
  /** The CA's certificate (PEM file). */
  readonly caCert: string;
  readonly #caKey: string;
  #serial = 1;

  private constructor(dir: string, name: string) {
    this.dir = dir;
    this.caCert = join(dir, `${name}.crt`);
    this.#caKey = join(dir, `${name}.key`);
  }

  /** Makes a new CA named `name` (its CN) in a fresh temporary folder. */
  static async create(name = "colmena-test-ca"): Promise<TestCa> {
    const dir = await Deno.makeTempDir({ prefix: "colmena-ca-" });
    const ca = new TestCa(dir, "ca");
    await openssl([
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      ca.#caKey,
      "-out",
      ca.caCert,
      "-days",
      "2",
      "-subj",
      `/CN=${name}`,
      "-addext",
      "basicConstraints=critical,CA:TRUE",
      "-addext",
      "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    return ca;
  }

  /** A server certificate for `localhost` and `127.0.0.1`, signed by this CA. */
  server(name = "servidor"): Promise<CertFiles> {
    return this.#issue(name, [
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
      "extendedKeyUsage=serverAuth",
    ]);
  }

  /** A client certificate whose subject CN is `cn`, signed by this CA. */
  client(cn: string): Promise<CertFiles> {
    return this.#issue(cn, ["extendedKeyUsage=clientAuth"]);
  }

  async #issue(cn: string, extensions: string[]): Promise<CertFiles> {
    const base = join(this.dir, `${cn}-${this.#serial}`);
    const files = { cert: `${base}.crt`, key: `${base}.key` };
    const csr = `${base}.csr`;
    const ext = `${base}.ext`;
    await openssl([
      "req",
      "-new",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-keyout",
      files.key,
      "-out",
      csr,
      "-subj",
      `/CN=${cn}`,
    ]);
    await Deno.writeTextFile(ext, `${extensions.join("\n")}\n`);
    await openssl([
      "x509",
      "-req",
      "-in",
      csr,
      "-CA",
      this.caCert,
      "-CAkey",
      this.#caKey,
      "-set_serial",
      String(this.#serial++),
      "-days",
      "2",
      "-extfile",
      ext,
      "-out",
      files.cert,
    ]);
    return files;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

async function openssl(args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, stdout: "piped", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(
      `Cannot run "openssl ${args[0]}": ${new TextDecoder().decode(out.stderr).trim()}`,
    );
  }
}

/** Whether the `openssl` CLI runs here (the TLS tests need it to make their certificates). */
export async function opensslAvailable(): Promise<boolean> {
  try {
    return (await new Deno.Command("openssl", { args: ["version"], stdout: "null", stderr: "null" })
      .output()).success;
  } catch {
    return false;
  }
}
