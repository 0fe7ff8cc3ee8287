# Reference fits of hlmm's models by R's nlme (and MASS::rlm), independent of hlmm's code.
#
#   python tests/data/r_reference/make_data.py        # the inputs (seeded numpy)
#   Rscript tests/data/r_reference/make_reference.R   # writes snp_fits.tsv, null_fits.tsv, rlm_slope.tsv
#
# Made with R 4.2.2, nlme 3.1-162, MASS 7.3-58.2 (see r_session.txt). tests/test_r_reference.py
# reads the TSVs; it does not need R.
#
# Models and parameterisation
# ---------------------------
# hlmm: y ~ N(X alpha, h2 G G' + diag(exp(V beta))).
# HLM  = gls(y ~ x..., weights = varComb(varExp(form = ~ v1), varExp(form = ~ v2), ...), method = "ML").
#        nlme: Var(e_i) = sigma^2 prod_k exp(2 theta_k v_ik), so beta = (log sigma^2, 2 theta_1, 2 theta_2, ...)
#        for V = [1, v1, v2, ...] (varComb multiplies the variance functions; each varExp has one
#        covariate and one theta). Checked below: nlme's logLik equals the dense Gaussian
#        log-likelihood at (alpha, beta).
# HLMM = lme(y ~ x..., random = list(grp = pdIdent(~ G1 + ... + Gl - 1)), weights = <as for HLM>,
#        method = "ML") with one group holding everyone. pdIdent is relative to sigma^2: the random
#        effects have variance sigma^2 psi with psi = pdMatrix(reStruct)[1, 1], so h2 = sigma^2 psi
#        (the "Variance" of VarCorr, which prints rounded). Checked below as for HLM.
# G:     random-effect genotypes mean-imputed per column, z-scored (population sd), divided by sqrt(l).
# SNP:   copies of A1 (the .bim's 5th column), centred over the individuals with a call; the
#        individuals without a call are left out of that SNP's fit.
# Default mode of hlmm_chr (hlmm 1.2.0a1): null HLM with the covariates -> (alpha0, beta0);
#        y* = (y - X alpha0) exp(-V beta0 / 2); null HLMM y* ~ 1 with random effects -> null h2;
#        each SNP: X = V = [1, g] on y* (HLM, or HLMM with random effects).
#
# Convergence
# -----------
# gls and lme minimise by nlminb with a finite-difference gradient. gls passes no tolerances to
# nlminb, and with its defaults (rel.tol = 1e-10 on the log-likelihood) these fits stopped up to
# 3e-6 (gls) and 2e-5 (lme) from the maximum (largest Newton step below). The tolerances are tightened by tracing stats::nlminb
# (base::trace inserts `control <- modifyList(control, ...)` at its top): rel.tol 1e-15 (with
# sing.tol 1e-30, so that nlminb does not stop with "singular convergence" near the optimum) is
# tried first, then 1e-14, 1e-13, 1e-12 and the default if nlminb still reports an error. Each fit
# records the rel.tol used and the largest |Newton step| from the fitted point to the maximum,
# computed from the exact dense score and observed information (dense_stats below, checked
# against finite differences): that is how far nlme's numbers are from the exact MLE.
#
# Standard errors
# ---------------
# HLM add_se:  vcov(gls) for method = "ML" is (N / (N - p)) (X' W X)^-1 (a degrees-of-freedom
#              factor, p = number of mean effects); add_se = sqrt of (N - p) / N times it, checked
#              against the dense (X' D^-1 X)^-1. add_se_vcov keeps nlme's own value.
# HLM var_se:  expected information, 2 (V'V)^-1 (hlmm's and 1.2.0a1's convention for hetlm);
#              a formula, not an nlme output.
# HLMM SEs:    observed information at nlme's estimate: inverse of minus the exact dense Hessian
#              in (alpha, beta, h2) (hlmm's and 1.2.0a1's convention for hetlmm). nlme's apVar
#              (numerical Hessian of the profiled log-likelihood in (log sd, theta, log sigma))
#              transformed by the exact Jacobian agrees with it only to ~1%, so it is recorded
#              (h2_se_apvar, var_se_apvar) but is not the reference.
# Effects of covariates are in the covariates' own units (R fits the raw covariates).

suppressMessages({
  library(nlme)
  library(MASS)
})

args <- commandArgs(trailingOnly = FALSE)
file_arg <- sub("^--file=", "", args[grep("^--file=", args)])
here <- if (length(file_arg)) dirname(normalizePath(file_arg)) else "."

# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
pheno <- read.table(file.path(here, "pheno.txt"), header = TRUE, stringsAsFactors = FALSE)
covar <- read.table(file.path(here, "covar.txt"), header = TRUE, stringsAsFactors = FALSE)
geno <- read.delim(file.path(here, "genotypes.tsv"), stringsAsFactors = FALSE)
rnd <- read.delim(file.path(here, "random.tsv"), stringsAsFactors = FALSE)
stopifnot(identical(pheno$IID, covar$IID), identical(pheno$IID, geno$IID), identical(pheno$IID, rnd$IID))

n <- nrow(pheno)
y <- pheno$trait
C <- as.matrix(covar[, c("age", "batch")])
snps <- names(geno)[-(1:2)]
R <- as.matrix(rnd[, -(1:2)])
for (j in seq_len(ncol(R))) R[is.na(R[, j]), j] <- mean(R[, j], na.rm = TRUE)
l <- ncol(R)
G <- sweep(R, 2, colMeans(R))
G <- sweep(G, 2, sqrt(colMeans(G^2)), "/") / sqrt(l)
colnames(G) <- paste0("G", seq_len(l))
re_formula <- as.formula(paste("~", paste(colnames(G), collapse = " + "), "- 1"))

# ---------------------------------------------------------------------------------------------
# Exact dense log-likelihood, score and observed information in hlmm's parameters
# ---------------------------------------------------------------------------------------------
dense_stats <- function(y, X, V, G, alpha, beta, h2 = 0) {
  n <- length(y); c <- ncol(X); v <- ncol(V)
  d <- as.vector(exp(V %*% beta))
  S <- diag(d, n)
  if (!is.null(G)) S <- S + h2 * tcrossprod(G)
  Si <- chol2inv(chol(S))
  r <- as.vector(y - X %*% alpha)
  Sir <- as.vector(Si %*% r)
  ll <- -0.5 * (n * log(2 * pi) + as.numeric(determinant(S, logarithm = TRUE)$modulus) + sum(r * Sir))
  dS <- lapply(seq_len(v), function(k) diag(V[, k] * d, n))   # d Sigma / d beta_k
  if (!is.null(G)) dS[[v + 1]] <- tcrossprod(G)                 # d Sigma / d h2
  q <- length(dS)
  SidS <- lapply(dS, function(A) Si %*% A)
  score <- c(as.vector(crossprod(X, Sir)),
             sapply(seq_len(q), function(k) -0.5 * sum(diag(SidS[[k]])) + 0.5 * sum(Sir * (dS[[k]] %*% Sir))))
  H <- matrix(0, c + q, c + q)
  H[1:c, 1:c] <- -crossprod(X, Si %*% X)
  for (k in seq_len(q)) {
    H[1:c, c + k] <- H[c + k, 1:c] <- -as.vector(crossprod(X, SidS[[k]] %*% Sir))
    for (m in k:q) {
      d2 <- if (k <= v && m <= v) V[, k] * V[, m] * d else rep(0, n)  # second derivatives of Sigma
      h <- -0.5 * sum(diag(Si) * d2) + 0.5 * sum(t(SidS[[k]]) * SidS[[m]]) +
        0.5 * sum(Sir^2 * d2) - sum(Sir * (dS[[k]] %*% (SidS[[m]] %*% Sir)))
      H[c + k, c + m] <- H[c + m, c + k] <- h
    }
  }
  list(loglik = ll, score = score, hessian = H)
}

check_dense_stats <- function() {
  # score and Hessian against central differences at an arbitrary point
  X <- cbind(1, C); V <- cbind(1, C)
  p0 <- c(2, 0.08, -0.2, 0.1, 0.02, 0.1, 0.8)
  f <- function(p) dense_stats(y, X, V, G, p[1:3], p[4:6], p[7])
  s0 <- f(p0); e <- 1e-5
  num_score <- sapply(seq_along(p0), function(i) { dp <- replace(0 * p0, i, e); (f(p0 + dp)$loglik - f(p0 - dp)$loglik) / (2 * e) })
  num_hess <- sapply(seq_along(p0), function(i) { dp <- replace(0 * p0, i, e); (f(p0 + dp)$score - f(p0 - dp)$score) / (2 * e) })
  err <- c(max(abs(num_score - s0$score) / (1 + abs(s0$score))), max(abs(num_hess - s0$hessian) / (1 + abs(s0$hessian))))
  cat(sprintf("dense score/Hessian vs finite differences: max rel err %.2g, %.2g\n", err[1], err[2]))
  stopifnot(all(err < 1e-6))
}

# ---------------------------------------------------------------------------------------------
# nlme fits with tight tolerances
# ---------------------------------------------------------------------------------------------
REL_TOLS <- c(1e-15, 1e-14, 1e-13, 1e-12, NA)  # NA: nlminb's default

with_nlminb_rel_tol <- function(rel_tol, expr) {
  if (!is.na(rel_tol)) {
    suppressMessages(trace(nlminb, print = FALSE, tracer = bquote(
      control <- modifyList(control, list(rel.tol = .(rel_tol), sing.tol = 1e-30, iter.max = 5000L, eval.max = 10000L)))))
    on.exit(suppressMessages(untrace(nlminb)))
  }
  expr
}

tight <- function(fitter) {
  for (rt in REL_TOLS) {
    fit <- tryCatch(with_nlminb_rel_tol(rt, fitter()), error = function(e) {
      cat("rel.tol", format(rt), "failed:", conditionMessage(e), "\n")
      NULL
    })
    if (!is.null(fit)) return(list(fit = fit, rel_tol = rt))
  }
  stop("no nlme fit converged")
}

var_formula <- function(vars) {
  fs <- lapply(vars, function(v) varExp(form = as.formula(paste("~", v))))
  if (length(fs) == 1) fs[[1]] else do.call(varComb, fs)
}

# beta = (log sigma^2, 2 theta) in the order of `vars`
log_var_effects <- function(fit, vars) {
  theta <- coef(fit$modelStruct$varStruct, unconstrained = FALSE)
  stopifnot(length(theta) == length(vars))
  c(log(fit$sigma^2), 2 * theta)
}

# one fit: data frame `dat` (column y, mean/variance covariates, G columns), mean and variance
# covariate names (besides the intercept), random effects or not
fit_model <- function(dat, mean_vars, var_vars, random) {
  mf <- as.formula(paste("y ~", if (length(mean_vars)) paste(mean_vars, collapse = " + ") else "1"))
  ctl <- glsControl(tolerance = 1e-12, maxIter = 1000L, msMaxIter = 5000L)
  lctl <- lmeControl(tolerance = 1e-12, maxIter = 1000L, msMaxIter = 5000L, msMaxEval = 10000L)
  weights <- if (length(var_vars)) var_formula(var_vars) else NULL
  fitter <- if (random) {
    function() lme(mf, data = dat, random = list(grp = pdIdent(re_formula)), weights = weights,
                   method = "ML", control = lctl)
  } else {
    function() gls(mf, data = dat, weights = weights, method = "ML", control = ctl)
  }
  res <- tight(fitter)
  fit <- res$fit
  X <- cbind(1, as.matrix(dat[, mean_vars, drop = FALSE]))
  V <- cbind(1, as.matrix(dat[, var_vars, drop = FALSE]))
  alpha <- if (random) fixef(fit) else coef(fit)
  beta <- if (length(var_vars)) log_var_effects(fit, var_vars) else log(fit$sigma^2)
  Gd <- if (random) as.matrix(dat[, colnames(G)]) else NULL
  h2 <- if (random) fit$sigma^2 * pdMatrix(fit$modelStruct$reStruct)[[1]][1, 1] else 0
  ds <- dense_stats(dat$y, X, V, Gd, alpha, beta, h2)
  ll <- as.numeric(logLik(fit))
  stopifnot(abs(ll - ds$loglik) < 1e-8 * abs(ll))  # the parameterisation is right
  step <- solve(-ds$hessian, ds$score)              # Newton step to the exact maximum
  c_ <- ncol(X); v_ <- ncol(V)
  out <- list(alpha = unname(alpha), beta = unname(beta), h2 = h2, loglik = ll, loglik_dense = ds$loglik,
              max_newton_step = max(abs(step)), rel_tol = res$rel_tol, n = nrow(dat),
              step_add = step[c_], step_var = step[c_ + v_], step_h2 = if (random) step[c_ + v_ + 1] else NA)
  if (random) {
    cov_obs <- solve(-ds$hessian)
    se <- sqrt(diag(cov_obs))
    out$alpha_se <- se[1:c_]
    out$beta_se <- se[c_ + 1:v_]
    out$h2_se <- se[c_ + v_ + 1]
    # nlme's own approximate covariance, (log sd, theta..., log sigma) -> (h2, 2 theta..., log sigma^2)
    ap <- fit$apVar
    if (is.matrix(ap)) {
      J <- diag(c(2 * h2, rep(2, v_ - 1), 2), nrow = v_ + 1)
      ap_se <- sqrt(diag(J %*% ap %*% t(J)))
      out$h2_se_apvar <- ap_se[1]
      if (v_ > 1) out$var_se_apvar <- ap_se[2:v_]
    }
  } else {
    W <- as.vector(exp(-V %*% beta))
    xwx_inv <- solve(crossprod(X, X * W))
    vc <- vcov(fit)
    N <- nrow(X); p <- ncol(X)
    stopifnot(max(abs(vc * (N - p) / N - xwx_inv)) < 1e-6 * max(abs(xwx_inv)))
    out$alpha_se <- sqrt(diag(vc) * (N - p) / N)
    out$alpha_se_vcov <- sqrt(diag(vc))
    out$beta_se <- sqrt(diag(2 * solve(crossprod(V))))
  }
  out
}

base_frame <- function(resp, rows = seq_len(n)) {
  data.frame(y = resp[rows], age = C[rows, "age"], batch = C[rows, "batch"],
             grp = factor(rep(1, length(rows))), G[rows, , drop = FALSE])
}

snp_frame <- function(resp, j) {
  g <- geno[[snps[j]]]
  called <- which(!is.na(g))
  dat <- base_frame(resp, called)
  dat$g <- g[called] - mean(g[called])
  dat
}

fmt <- function(x) ifelse(is.na(x), "NA", sprintf("%.17g", x))

# ---------------------------------------------------------------------------------------------
# Fits
# ---------------------------------------------------------------------------------------------
check_dense_stats()
cov_vars <- c("age", "batch")

null_hlm <- fit_model(base_frame(y), cov_vars, cov_vars, random = FALSE)
null_hlmm <- fit_model(base_frame(y), cov_vars, cov_vars, random = TRUE)
X0 <- cbind(1, C); V0 <- cbind(1, C)
y_std <- as.vector((y - X0 %*% null_hlm$alpha) * exp(-0.5 * (V0 %*% null_hlm$beta)))
null_hlmm_default <- fit_model(base_frame(y_std), character(0), character(0), random = TRUE)

snp_rows <- list()
add_snp_row <- function(analysis, j, f) {
  snp_rows[[length(snp_rows) + 1]] <<- data.frame(
    analysis = analysis, SNP = snps[j], n = f$n,
    add = fmt(tail(f$alpha, 1)), add_se = fmt(tail(f$alpha_se, 1)),
    add_se_vcov = fmt(if (is.null(f$alpha_se_vcov)) NA else tail(f$alpha_se_vcov, 1)),
    var = fmt(tail(f$beta, 1)), var_se = fmt(tail(f$beta_se, 1)),
    var_se_apvar = fmt(if (is.null(f$var_se_apvar)) NA else tail(f$var_se_apvar, 1)),
    h2 = fmt(if (is.null(f$h2_se)) NA else f$h2), h2_se = fmt(if (is.null(f$h2_se)) NA else f$h2_se),
    h2_se_apvar = fmt(if (is.null(f$h2_se_apvar)) NA else f$h2_se_apvar),
    loglik = fmt(f$loglik), loglik_dense = fmt(f$loglik_dense),
    max_newton_step = format(f$max_newton_step, digits = 3),
    newton_step_add = format(f$step_add, digits = 3), newton_step_var = format(f$step_var, digits = 3),
    newton_step_h2 = format(f$step_h2, digits = 3), rel_tol = format(f$rel_tol),
    stringsAsFactors = FALSE)
}

for (j in seq_along(snps)) {
  cat("SNP", snps[j], "\n")
  add_snp_row("hlm_default", j, fit_model(snp_frame(y_std, j), "g", "g", random = FALSE))
  add_snp_row("hlm_fit_covariates", j, fit_model(snp_frame(y, j), c(cov_vars, "g"), c(cov_vars, "g"), random = FALSE))
  add_snp_row("hlmm_default", j, fit_model(snp_frame(y_std, j), "g", "g", random = TRUE))
  add_snp_row("hlmm_fit_covariates", j, fit_model(snp_frame(y, j), c(cov_vars, "g"), c(cov_vars, "g"), random = TRUE))
}
snp_fits <- do.call(rbind, snp_rows)
write.table(snp_fits, file.path(here, "snp_fits.tsv"), sep = "\t", quote = FALSE, row.names = FALSE)

null_rows <- list()
add_null_rows <- function(analysis, f) {
  names_ <- c(paste0("mean:", c("Intercept", cov_vars)[seq_along(f$alpha)]),
              paste0("var:", c("Intercept", cov_vars)[seq_along(f$beta)]))
  est <- c(f$alpha, f$beta); se <- c(f$alpha_se, f$beta_se)
  if (!is.null(f$h2_se)) { names_ <- c(names_, "h2"); est <- c(est, f$h2); se <- c(se, f$h2_se) }
  null_rows[[length(null_rows) + 1]] <<- data.frame(
    analysis = analysis, parameter = names_, estimate = fmt(est), se = fmt(se), n = f$n,
    loglik = fmt(f$loglik), max_newton_step = format(f$max_newton_step, digits = 3), rel_tol = format(f$rel_tol),
    stringsAsFactors = FALSE)
}
add_null_rows("hlm_covariates", null_hlm)
add_null_rows("hlmm_covariates", null_hlmm)
add_null_rows("hlmm_default_standardised", null_hlmm_default)
write.table(do.call(rbind, null_rows), file.path(here, "null_fits.tsv"), sep = "\t", quote = FALSE, row.names = FALSE)

# ---------------------------------------------------------------------------------------------
# Robust mean-variance slope (hlmm_dispersion's step 1): Huber, k = 1.345, MAD scale.
# MASS rescales the MAD by 0.6745, statsmodels by qnorm(0.75) = 0.6744897501960817.
# ---------------------------------------------------------------------------------------------
rv <- read.delim(file.path(here, "rlm_vectors.tsv"))
fit_default <- rlm(var ~ add - 1, data = rv)
fit_tight <- rlm(var ~ add - 1, data = rv, acc = 1e-14, maxit = 1000)
stopifnot(fit_tight$converged)
write.table(data.frame(fit = c("rlm_default", "rlm_tight"),
                       slope = fmt(c(coef(fit_default)[1], coef(fit_tight)[1])),
                       scale = fmt(c(fit_default$s, fit_tight$s)),
                       iterations = c(length(fit_default$conv), length(fit_tight$conv))),
            file.path(here, "rlm_slope.tsv"), sep = "\t", quote = FALSE, row.names = FALSE)

writeLines(c(R.version.string, paste("nlme", packageVersion("nlme")), paste("MASS", packageVersion("MASS"))),
           file.path(here, "r_session.txt"))
cat("largest Newton step from an nlme fit to the exact MLE:",
    format(max(as.numeric(snp_fits$max_newton_step)), digits = 3), "\n")
