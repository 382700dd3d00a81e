/*
 * The live patch for deploy/demo/service/quote_service.c: `hotpatch build` compiles this into the
 * bundle's patch.so, and the engine redirects the service's functions of the same names here.
 *
 *   compute_price    charges exactly `quantity` units (v1 charged one unit too many)
 *   service_version  answers "v2", so clients see which code served them
 */
#define UNIT_CENTS 199
#define VAT_PERCENT 7

/* Price in cents of `quantity` units at UNIT_CENTS each, VAT included, rounded to the nearest cent. */
long compute_price(long quantity) {
  long net = quantity * UNIT_CENTS;
  return (net * (100 + VAT_PERCENT) + 50) / 100;
}

/* Version tag put in front of every answer. */
const char *service_version(void) { return "v2"; }
