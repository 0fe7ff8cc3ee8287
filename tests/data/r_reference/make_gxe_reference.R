# Reference fits of the per-variant G×E heteroskedastic model (hlmm_chr --interaction) by nlme::gls.
#
#   .venv/bin/python tests/data/r_reference/make_gxe_data.py   # gxe_data.tsv (seeded numpy)
#   cd tests/data/r_reference && Rscript make_gxe_reference.R  # gxe_fits.tsv, gxe2_fits.tsv
#
# Deterministic (no random numbers; nlminb from nlme's fixed start). Made with R 4.2.2, nlme 3.1-162.
#
# Model, per variant, with the covariates fitted per variant (N = individuals with a call):
#   g      = copies of A1 (the .bim's 5th column), centred over the N individuals with a call;
#            individuals without a call are left out of that variant's fit
#   mean   = a0 + a_x1 x1 + a_sex sex + a_E E [+ a_E2 E2] + a_g g + a_gxe g*E [+ a_gxe2 g*E2]
#            (g*E: the centred g times E as given)
#   logvar = b0 + b_x1 x1 + b_sex sex + b_E E [+ b_E2 E2] + b_g g
#   gls(y ~ x1 + sex + E + g + gxe, weights = varComb(varExp(~x1), varExp(~sex), varExp(~E), varExp(~g)),
#       method = "ML")
#   nlme: Var(e_i) = sigma^2 prod_k exp(2 t_k v_ik)  =>  b0 = log(sigma^2), b_k = 2 t_k.
#   Checked per fit: nlme's logLik equals the explicit Gaussian log-likelihood
#   -1/2 sum_i [log(2 pi) + v_i'b + (y_i - x_i'a)^2 exp(-v_i'b)] at (a, b).
#
# Optimisation: with only a varFunc (no corStruct, no fitted-value covariate) gls makes ONE nlminb
# call on the profiled log-likelihood and stops (no outer iterations), so of glsControl only
# msMaxIter (nlminb's iter.max) acts; tolerance, msTol and maxIter are not used. nlminb gets no
# gradient and by default runs with rel.tol = 1e-10 on the objective, which left these fits up
# to 4e-5 from the maximum; the rel.tol is therefore tightened by tracing nlminb (below). How far
# each fit is from the exact maximum is recorded (max_newton_step: the largest |Newton step|
# computed from the exact score and observed information at nlme's estimate).
#
# Standard errors (all evaluated at nlme's estimate):
#   *_se_exp   inverse EXPECTED information of the ML fit: alpha block (X' W X)^-1 with
#              W = diag(exp(-V b)) (i.e. sigma^2_ML and the ML variance weights), beta block
#              2 (V'V)^-1; the two blocks are orthogonal.
#   *_se_obs   inverse OBSERVED information: stats::optimHess of the explicit log-likelihood above
#              (analytic gradient, numerically differentiated) in (a, b); checked against the
#              analytic Hessian (relative difference of the SEs < 1e-6).
#   mean_*_se_nlme  sqrt(diag(vcov(fit))) = summary(fit)$tTable[, "Std.Error"]. For method = "ML"
#              nlme scales sigma^2 (X'WX)^-1 by (N - REML p)/(N - p) = N/(N - p) (p = number of
#              mean coefficients): vcov(fit) = N/(N - p) (X' W X)^-1, i.e. sigma^2_ML replaced by
#              the residual-df estimate N sigma^2_ML/(N - p). So mean_*_se_nlme =
#              sqrt(N/(N - p)) * mean_*_se_exp (checked per fit).
#   var_*_se_apvar  from fit$apVar: nlme's inverse of minus a finite-difference Hessian (fdHess) of
#              the log-likelihood profiled over the mean coefficients, in (t_1, ..., t_k, log sigma),
#              converted by b_k = 2 t_k, b0 = 2 log sigma (SE x 2). Profiling over the mean gives
#              the variance block of the inverse observed information, so it estimates *_se_obs
#              up to the finite-difference error.

suppressMessages(library(nlme))

args <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args[grep("^--file=", args)])
here <- if (length(file_arg)) dirname(normalizePath(file_arg)) else "."

dat0 <- read.delim(file.path(here, "gxe_data.tsv"), stringsAsFactors = FALSE)
variants <- paste0("g", 1:6)
covariates <- c("x1", "sex")
CTRL <- glsControl(tolerance = 1e-10, msTol = 1e-10, msMaxIter = 500, maxIter = 500, returnObject = TRUE)
OPTIMHESS_RTOL <- 1e-6
NEWTON_OK <- 1e-6
REL_TOLS <- c(1e-15, 1e-14, 1e-13, 1e-12, NA)  # nlminb rel.tol tried in turn; NA: nlminb's default

# gls passes nlminb only iter.max; tighten its relative tolerance by tracing stats::nlminb
# (the tracer edits `control` at the top of nlminb). sing.tol = 1e-30 stops nlminb from ending
# with "singular convergence" near the optimum. If nlminb still fails, the next rel.tol is tried.
with_nlminb_rel_tol <- function(rel_tol, expr) {
  if (!is.na(rel_tol)) {
    suppressMessages(trace(nlminb, print = FALSE, tracer = bquote(
      control <- modifyList(control, list(rel.tol = .(rel_tol), sing.tol = 1e-30, iter.max = 5000L, eval.max = 10000L)))))
    on.exit(suppressMessages(untrace(nlminb)))
  }
  expr
}

# ---------------------------------------------------------------------------------------------
# Explicit log-likelihood, score and observed information in (alpha, beta)
# ---------------------------------------------------------------------------------------------
loglik_explicit <- function(par, y, X, V) {
  a <- par[seq_len(ncol(X))]; b <- par[ncol(X) + seq_len(ncol(V))]
  lv <- as.vector(V %*% b); r <- as.vector(y - X %*% a)
  -0.5 * sum(log(2 * pi) + lv + r^2 * exp(-lv))
}
score_explicit <- function(par, y, X, V) {
  a <- par[seq_len(ncol(X))]; b <- par[ncol(X) + seq_len(ncol(V))]
  w <- exp(-as.vector(V %*% b)); r <- as.vector(y - X %*% a)
  c(crossprod(X, r * w), -0.5 * crossprod(V, 1 - r^2 * w))
}
hessian_explicit <- function(par, y, X, V) {
  a <- par[seq_len(ncol(X))]; b <- par[ncol(X) + seq_len(ncol(V))]
  w <- exp(-as.vector(V %*% b)); r <- as.vector(y - X %*% a)
  Haa <- -crossprod(X, X * w)
  Hab <- -crossprod(X, V * (r * w))
  Hbb <- -0.5 * crossprod(V, V * (r^2 * w))
  rbind(cbind(Haa, Hab), cbind(t(Hab), Hbb))
}

# ---------------------------------------------------------------------------------------------
# One fit
# ---------------------------------------------------------------------------------------------
fit_variant <- function(variant, exposures) {
  g <- dat0[[variant]]
  called <- which(!is.na(g))
  d <- dat0[called, c("y", covariates, exposures)]
  d$g <- g[called] - mean(g[called])
  gxe <- paste0("gx", exposures)
  for (k in seq_along(exposures)) d[[gxe[k]]] <- d$g * d[[exposures[k]]]
  mean_vars <- c(covariates, exposures, "g", gxe)
  var_vars <- c(covariates, exposures, "g")
  mf <- as.formula(paste("y ~", paste(mean_vars, collapse = " + ")))
  vf <- do.call(varComb, lapply(var_vars, function(v) varExp(form = as.formula(paste("~", v)))))

  fit <- NULL
  for (rel_tol in REL_TOLS) {
    warned <- character(0)
    fit <- tryCatch(with_nlminb_rel_tol(rel_tol, withCallingHandlers(
      gls(mf, data = d, weights = vf, method = "ML", control = CTRL),
      warning = function(w) { warned <<- c(warned, conditionMessage(w)); invokeRestart("muffleWarning") })),
      error = function(e) { cat(variant, "rel.tol", format(rel_tol), "failed:", conditionMessage(e), "\n"); NULL })
    if (!is.null(fit)) break
  }
  stopifnot(!is.null(fit))

  X <- cbind(1, as.matrix(d[, mean_vars])); V <- cbind(1, as.matrix(d[, var_vars]))
  N <- nrow(X); p <- ncol(X); q <- ncol(V)
  alpha <- unname(coef(fit))
  theta <- unname(coef(fit$modelStruct$varStruct, unconstrained = FALSE))
  stopifnot(length(theta) == q - 1)
  beta <- c(log(fit$sigma^2), 2 * theta)
  par <- c(alpha, beta)

  ll <- as.numeric(logLik(fit))
  ll_explicit <- loglik_explicit(par, d$y, X, V)
  stopifnot(abs(ll - ll_explicit) < 1e-9 * abs(ll))

  # expected information
  w <- exp(-as.vector(V %*% beta))
  cov_alpha_exp <- solve(crossprod(X, X * w))
  se_alpha_exp <- sqrt(diag(cov_alpha_exp))
  se_beta_exp <- sqrt(diag(2 * solve(crossprod(V))))
  # nlme's vcov: N / (N - p) times the inverse expected information
  vc <- unname(vcov(fit))
  stopifnot(max(abs(vc * (N - p) / N - cov_alpha_exp)) < 1e-8 * max(abs(cov_alpha_exp)))
  stopifnot(max(abs(sqrt(diag(vc)) - unname(summary(fit)$tTable[, "Std.Error"]))) == 0)
  se_alpha_nlme <- sqrt(diag(vc))

  # observed information: optimHess, checked against the analytic Hessian
  H_num <- optimHess(par, loglik_explicit, score_explicit, y = d$y, X = X, V = V)
  H <- hessian_explicit(par, d$y, X, V)
  se_obs <- sqrt(diag(solve(-H_num)))
  se_obs_exact <- sqrt(diag(solve(-H)))
  optimhess_rdiff <- max(abs(se_obs / se_obs_exact - 1))
  stopifnot(optimhess_rdiff < OPTIMHESS_RTOL)
  step <- solve(-H, score_explicit(par, d$y, X, V))  # Newton step to the exact maximum

  # nlme's apVar: (t_1..t_{q-1}, lSigma) -> (b0 = 2 lSigma, b_k = 2 t_k)
  ap <- fit$apVar
  se_beta_apvar <- if (is.matrix(ap)) {
    s <- 2 * sqrt(diag(ap))
    c(s[q], s[seq_len(q - 1)])
  } else rep(NA_real_, q)

  converged <- length(warned) == 0 && is.matrix(ap) && all(eigen(-H, only.values = TRUE)$values > 0) &&
    max(abs(step)) < NEWTON_OK
  list(N = N, p = p, loglik = ll, alpha = alpha, beta = beta,
       se_alpha_exp = se_alpha_exp, se_alpha_obs = se_obs[1:p], se_alpha_nlme = se_alpha_nlme,
       se_beta_exp = se_beta_exp, se_beta_obs = se_obs[p + 1:q], se_beta_apvar = se_beta_apvar,
       max_newton_step = max(abs(step)), rel_tol = rel_tol, optimhess_rdiff = optimhess_rdiff, converged = converged,
       warnings = warned)
}

fmt <- function(x) ifelse(is.na(x), "NA", sprintf("%.17g", x))

fit_row <- function(variant, exposures, mean_names, var_names) {
  f <- fit_variant(variant, exposures)
  if (length(f$warnings)) cat(variant, paste(exposures, collapse = "+"), "warning:", f$warnings, "\n")
  row <- list(variant = variant)
  if (length(exposures) == 1) row$exposure <- exposures else {
    for (k in seq_along(exposures)) row[[paste0("exposure", k)]] <- exposures[k]
  }
  row$n <- f$N
  row$loglik <- fmt(f$loglik)
  for (k in seq_along(mean_names)) {
    nm <- paste0("mean_", mean_names[k])
    row[[nm]] <- fmt(f$alpha[k])
    row[[paste0(nm, "_se_exp")]] <- fmt(f$se_alpha_exp[k])
    row[[paste0(nm, "_se_obs")]] <- fmt(f$se_alpha_obs[k])
    row[[paste0(nm, "_se_nlme")]] <- fmt(f$se_alpha_nlme[k])
  }
  for (k in seq_along(var_names)) {
    nm <- paste0("var_", var_names[k])
    row[[nm]] <- fmt(f$beta[k])
    row[[paste0(nm, "_se_exp")]] <- fmt(f$se_beta_exp[k])
    row[[paste0(nm, "_se_obs")]] <- fmt(f$se_beta_obs[k])
    row[[paste0(nm, "_se_apvar")]] <- fmt(f$se_beta_apvar[k])
  }
  row$max_newton_step <- format(f$max_newton_step, digits = 3)
  row$nlminb_rel_tol <- format(f$rel_tol)
  row$converged <- if (f$converged) "TRUE" else "FALSE"
  as.data.frame(row, stringsAsFactors = FALSE)
}

header_common <- c(
  "# Reference fits by nlme::gls(method = \"ML\") of the per-variant G×E heteroskedastic model; made by",
  "# make_gxe_reference.R from gxe_data.tsv (see that script for the model and the SE definitions).",
  sprintf("# %s, nlme %s. Tab-separated; one row per variant; numbers printed with 17 significant digits.",
          R.version.string, packageVersion("nlme")),
  "#",
  "# g = copies of A1 (T), centred over the n individuals with a call (the others are left out of the fit);",
  "# gxe = centred g times the exposure as given. Covariates x1, sex are in both the mean and the log-variance.",
  "#",
  "# variant       g1..g6",
  "# n             individuals in the fit (with a call for the variant)",
  "# loglik        maximised ML log-likelihood (nlme logLik; equals the explicit Gaussian log-likelihood)",
  "# mean_<term>   mean coefficient (alpha); terms in the order of the columns",
  "# var_<term>    log-variance coefficient beta: var_intercept = log(sigma^2), var_<v> = 2 * nlme's varExp theta",
  "# *_se_exp      SE from the inverse EXPECTED information of the ML fit: mean (X'WX)^-1, W = diag(exp(-V beta));",
  "#               log-variance 2 (V'V)^-1 (mean and log-variance blocks orthogonal)",
  "# *_se_obs      SE from the inverse OBSERVED information in (alpha, beta): optimHess of the explicit",
  "#               ML log-likelihood at nlme's estimate (agrees with the analytic Hessian to < 1e-6 relative)",
  "# mean_*_se_nlme  sqrt(diag(vcov(fit))) (= summary(fit)$tTable Std.Error) = sqrt(n / (n - p)) * mean_*_se_exp,",
  "#               p = number of mean coefficients (nlme rescales sigma^2_ML to the residual-df estimate)",
  "# var_*_se_apvar  SE from fit$apVar (finite-difference Hessian of the log-likelihood profiled over the mean,",
  "#               in (theta, log sigma)), times 2 for beta = 2 theta and log(sigma^2) = 2 log(sigma)",
  "# max_newton_step  largest |Newton step| from nlme's estimate to the exact maximum (exact score / Hessian):",
  "#               how far the reported estimates are from the exact MLE",
  "# nlminb_rel_tol  nlminb's rel.tol used inside gls (set by tracing nlminb; NA = nlminb's default 1e-10)",
  sprintf("# converged     TRUE: gls returned without warning or error, apVar is positive definite, the observed"),
  sprintf("#               information is positive definite and max_newton_step < %g", NEWTON_OK))

write_tsv <- function(rows, path, header) {
  con <- file(path, "w")
  writeLines(header, con)
  write.table(do.call(rbind, rows), con, sep = "\t", quote = FALSE, row.names = FALSE)
  close(con)
}

# (a) exposure E, (b) exposure B: all variants
mean1 <- c("intercept", covariates, "exposure", "g", "gxe")
var1 <- c("intercept", covariates, "exposure", "g")
rows <- list()
for (e in c("E", "B")) for (v in variants) rows[[length(rows) + 1]] <- fit_row(v, e, mean1, var1)
write_tsv(rows, file.path(here, "gxe_fits.tsv"), c(header_common,
  "# exposure      E (continuous) or B (binary), a column of gxe_covar.txt",
  "# Models: mean = intercept + x1 + sex + exposure + g + gxe; log-variance = intercept + x1 + sex + exposure + g",
  "# Columns mean_exposure / var_exposure are the exposure's main effects, mean_gxe the interaction."))

# (c) exposures E and E2 together: two variants
mean2 <- c("intercept", covariates, "exposure1", "exposure2", "g", "gxe1", "gxe2")
var2 <- c("intercept", covariates, "exposure1", "exposure2", "g")
rows2 <- lapply(c("g1", "g3"), function(v) fit_row(v, c("E", "E2"), mean2, var2))
write_tsv(rows2, file.path(here, "gxe2_fits.tsv"), c(header_common,
  "# exposure1, exposure2  E and E2 (columns of gxe_covar.txt)",
  "# Model: mean = intercept + x1 + sex + E + E2 + g + g*E + g*E2 (gxe1 = g*E, gxe2 = g*E2);",
  "#        log-variance = intercept + x1 + sex + E + E2 + g"))

all_rows <- do.call(rbind, c(lapply(rows, function(r) r[, c("variant", "max_newton_step", "converged")]),
                             lapply(rows2, function(r) r[, c("variant", "max_newton_step", "converged")])))
cat("fits:", nrow(all_rows), " converged:", sum(all_rows$converged == "TRUE"),
    " largest Newton step:", format(max(as.numeric(all_rows$max_newton_step)), digits = 3), "\n")
