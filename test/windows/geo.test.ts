import { describe, expect, it } from "vitest";
import { placeOf } from "../../src/infra/geo.js";

describe("placeOf: where a callee is, from the number", () => {
  it("places NANP numbers by area code: zone, state, country", () => {
    expect(placeOf("+13055550123")).toEqual({
      country: "US",
      areaCode: "305",
      region: "FL",
      zones: ["America/New_York"],
      zonesPrecise: true,
    });
    expect(placeOf("+14155550123")).toMatchObject({ region: "CA", zones: ["America/Los_Angeles"] });
    expect(placeOf("+13125550123")).toMatchObject({ region: "IL", zones: ["America/Chicago"] });
    expect(placeOf("+14165550123")).toMatchObject({
      country: "CA",
      region: "ON",
      zones: ["America/Toronto"],
    });
    expect(placeOf("+18085550123")).toMatchObject({ region: "HI", zones: ["Pacific/Honolulu"] });
  });

  it("gives every zone of an area code that spans several", () => {
    expect(placeOf("+19075550123").zones).toEqual(["America/Adak", "America/Anchorage"]);
  });

  it("marks a number the tables cannot place inside a multi-zone country", () => {
    const tollFree = placeOf("+18005550123");
    expect(tollFree.zonesPrecise).toBe(false);
    expect(tollFree.zones).toContain("America/New_York");
    expect(tollFree.zones).toContain("Pacific/Honolulu");
  });

  it("counts a single-zone country as placed", () => {
    expect(placeOf("+919876543210")).toMatchObject({
      country: "IN",
      zones: ["Asia/Calcutta"],
      zonesPrecise: true,
    });
    expect(placeOf("+919876543210").areaCode).toBeUndefined();
  });

  it("gives a region only for NANP numbers", () => {
    expect(placeOf("+442079460123").region).toBeUndefined();
    expect(placeOf("+442079460123").zones).toContain("Europe/London");
  });
});
