/** The bounded TTL cache behind the token and negative caches (src/authorization/cache.ts). */
import { describe, expect, it } from "vitest";
import { TtlCache } from "../../src/authorization/cache";

describe("TtlCache", () => {
  it("returns what was set until the TTL has passed, then forgets it", () => {
    const c = new TtlCache<string>(10, 1000);
    c.set("a", "A", 0);
    expect(c.get("a", 0)).toBe("A");
    expect(c.get("a", 999)).toBe("A");
    expect(c.get("a", 1000)).toBeUndefined(); // exactly at the TTL it is gone
    expect(c.size).toBe(0); // and an expired entry is dropped when seen
    expect(c.get("a", 500)).toBeUndefined(); // it does not come back
  });

  it("misses for keys never set", () => {
    const c = new TtlCache<number>(10, 1000);
    expect(c.get("nope", 0)).toBeUndefined();
  });

  it("setting again replaces the value and restarts the TTL", () => {
    const c = new TtlCache<string>(10, 1000);
    c.set("a", "A1", 0);
    c.set("a", "A2", 800);
    expect(c.get("a", 1500)).toBe("A2");
    expect(c.get("a", 1800)).toBeUndefined();
    expect(c.size).toBe(0);
  });

  it("never holds more than maxEntries; the oldest insertion goes first", () => {
    const c = new TtlCache<number>(3, 60_000);
    for (let i = 0; i < 10; i++) {
      c.set(`k${i}`, i, i);
      expect(c.size).toBeLessThanOrEqual(3);
    }
    expect(c.size).toBe(3);
    expect(c.get("k6", 10)).toBeUndefined();
    expect([c.get("k7", 10), c.get("k8", 10), c.get("k9", 10)]).toEqual([7, 8, 9]);
  });

  it("re-setting a key makes it the newest, so it survives the next eviction", () => {
    const c = new TtlCache<number>(2, 60_000);
    c.set("a", 1, 0);
    c.set("b", 2, 0);
    c.set("a", 11, 1); // a is now newer than b
    c.set("c", 3, 2); // evicts b
    expect(c.get("a", 3)).toBe(11);
    expect(c.get("b", 3)).toBeUndefined();
    expect(c.get("c", 3)).toBe(3);
    expect(c.size).toBe(2);
  });

  it("replacing a key when full evicts nothing", () => {
    const c = new TtlCache<number>(2, 60_000);
    c.set("a", 1, 0);
    c.set("b", 2, 0);
    c.set("b", 22, 1);
    expect(c.get("a", 2)).toBe(1);
    expect(c.get("b", 2)).toBe(22);
  });

  it("maxEntries 0 or TTL 0 disables caching", () => {
    const none = new TtlCache<number>(0, 60_000);
    none.set("a", 1, 0);
    expect(none.get("a", 0)).toBeUndefined();
    expect(none.size).toBe(0);
    const instant = new TtlCache<number>(10, 0);
    instant.set("a", 1, 0);
    expect(instant.get("a", 0)).toBeUndefined();
    expect(instant.size).toBe(0);
  });

  it("delete and clear", () => {
    const c = new TtlCache<number>(10, 60_000);
    c.set("a", 1, 0);
    c.set("b", 2, 0);
    c.delete("a");
    expect(c.get("a", 1)).toBeUndefined();
    expect(c.get("b", 1)).toBe(2);
    c.delete("missing");
    c.clear();
    expect(c.size).toBe(0);
    expect(c.get("b", 1)).toBeUndefined();
  });

  it("counts hits and misses (expired entries are misses)", () => {
    const c = new TtlCache<number>(10, 100);
    c.set("a", 1, 0);
    c.get("a", 50);
    c.get("a", 60);
    c.get("a", 100);
    c.get("b", 0);
    expect(c.hits).toBe(2);
    expect(c.misses).toBe(2);
  });

  it("stores falsy values faithfully", () => {
    const c = new TtlCache<unknown>(10, 100);
    c.set("zero", 0, 0);
    c.set("empty", "", 0);
    c.set("false", false, 0);
    expect(c.get("zero", 1)).toBe(0);
    expect(c.get("empty", 1)).toBe("");
    expect(c.get("false", 1)).toBe(false);
  });

  it("stays bounded under a flood of distinct keys", () => {
    const c = new TtlCache<true>(1000, 30_000);
    for (let i = 0; i < 50_000; i++) c.set(`k${i}`, true, i);
    expect(c.size).toBe(1000);
    expect(c.get("k49999", 50_000)).toBe(true);
    expect(c.get("k48999", 50_000)).toBeUndefined();
  });
});
