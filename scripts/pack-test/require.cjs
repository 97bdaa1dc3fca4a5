// CommonJS hosts: require() of the ESM build (Node ≥ 20.19 loads ES modules without top-level await).
const { createDispatcher, ValidationError } = require("dialgate");

if (typeof createDispatcher !== "function" || typeof ValidationError !== "function") {
  console.error("require: dialgate exports are missing");
  process.exit(1);
}
console.log("require: ok");
