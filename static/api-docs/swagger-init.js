// Interactive API docs (Swagger UI 5.35.0, vendored from the npm package swagger-ui-dist).
// Kept out of the page so that the Content-Security-Policy needs no inline script.
window.ui = SwaggerUIBundle({
  url: "/api/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  validatorUrl: null,
});
