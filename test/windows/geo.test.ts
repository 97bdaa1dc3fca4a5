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

  it("gives a number the tables place only by its country every zone of that country, and no region", () => {
    const tollFree = placeOf("+18005550123");
    expect(tollFree).toMatchObject({
      country: "US",
      areaCode: "800",
      region: undefined,
      zonesPrecise: false,
    });
    expect(tollFree.zones).toContain("America/New_York");
    expect(tollFree.zones).toContain("Pacific/Honolulu");
    // +1 is shared by 25 countries: only the United States' zones.
    expect(tollFree.zones).not.toContain("America/Toronto");
    expect(tollFree.zones).not.toContain("Pacific/Guam");
  });

  it("knows area codes opened lately (Florida's 645, California's 369) and two-province area codes", () => {
    expect(placeOf("+16455550123")).toMatchObject({
      region: "FL",
      zones: ["America/New_York"],
      zonesPrecise: true,
    });
    expect(placeOf("+13695550123")).toMatchObject({ region: "CA", zones: ["America/Los_Angeles"] });
    expect(placeOf("+19025550123")).toMatchObject({ country: "CA", region: "NS/PE" });
    expect(placeOf("+18675550123").region).toBe("NT/NU/YT");
  });

  it("counts a single-zone country as placed", () => {
    expect(placeOf("+919876543210")).toMatchObject({
      country: "IN",
      zones: ["Asia/Kolkata"],
      zonesPrecise: true,
    });
    expect(placeOf("+919876543210").areaCode).toBeUndefined();
  });

  it("gives a region only for NANP numbers", () => {
    expect(placeOf("+442079460123").region).toBeUndefined();
    expect(placeOf("+442079460123").zones).toContain("Europe/London");
  });
});
